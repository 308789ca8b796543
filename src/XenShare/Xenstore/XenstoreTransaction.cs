using XenShare.Abi;

namespace XenShare.Xenstore;

/// <summary>
/// A xenstore transaction handed to the body of <see cref="XenstoreClient.TransactionAsync{T}"/> (XS06):
/// the node operations of the client, carried out with this transaction's id in the message header so
/// the daemon applies them atomically at the commit. The client starts, commits, retries and aborts it;
/// once the body has returned the transaction rejects further use.
/// </summary>
public sealed class XenstoreTransaction
{
    private readonly XenstoreClient _client;
    private volatile bool _ended;

    internal XenstoreTransaction(XenstoreClient client, uint id)
    {
        _client = client;
        Id = id;
    }

    /// <summary>The transaction id the daemon assigned (the tx_id of every message of the transaction).</summary>
    public uint Id { get; }

    internal void MarkEnded() => _ended = true;

    private uint Tx => _ended ? throw new InvalidOperationException($"xenstore transaction {Id} has ended") : Id;

    /// <summary>XS_READ within the transaction.</summary>
    /// <exception cref="XenstoreException">The daemon refused (ENOENT for a missing node).</exception>
    public Task<byte[]> ReadAsync(string path, CancellationToken cancellationToken = default) =>
        _client.ReadCoreAsync(Tx, path, cancellationToken);

    /// <summary>XS_READ within the transaction, decoded as UTF-8.</summary>
    /// <exception cref="XenstoreException">The daemon refused (ENOENT for a missing node).</exception>
    public Task<string> ReadStringAsync(string path, CancellationToken cancellationToken = default) =>
        _client.ReadStringCoreAsync(Tx, path, cancellationToken);

    /// <summary>XS_READ within the transaction as UTF-8, or null when the node does not exist.</summary>
    /// <exception cref="XenstoreException">The daemon refused for a reason other than ENOENT.</exception>
    public Task<string?> TryReadStringAsync(string path, CancellationToken cancellationToken = default) =>
        _client.TryReadStringCoreAsync(Tx, path, cancellationToken);

    /// <summary>XS_WRITE within the transaction.</summary>
    /// <exception cref="ArgumentException">Path and value do not fit in one message.</exception>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task WriteAsync(string path, ReadOnlyMemory<byte> value, CancellationToken cancellationToken = default) =>
        _client.WriteCoreAsync(Tx, path, value, cancellationToken);

    /// <summary>XS_WRITE within the transaction, with a UTF-8 value.</summary>
    /// <exception cref="ArgumentException">Path and value do not fit in one message.</exception>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task WriteAsync(string path, string value, CancellationToken cancellationToken = default) =>
        _client.WriteCoreAsync(Tx, path, value, cancellationToken);

    /// <summary>XS_MKDIR within the transaction.</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task MkdirAsync(string path, CancellationToken cancellationToken = default) =>
        _client.SimpleCoreAsync(XsWire.XS_MKDIR, Tx, path, cancellationToken);

    /// <summary>XS_RM within the transaction.</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task RemoveAsync(string path, CancellationToken cancellationToken = default) =>
        _client.SimpleCoreAsync(XsWire.XS_RM, Tx, path, cancellationToken);

    /// <summary>XS_DIRECTORY within the transaction.</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task<IReadOnlyList<string>> DirectoryAsync(string path, CancellationToken cancellationToken = default) =>
        _client.DirectoryCoreAsync(Tx, path, cancellationToken);

    /// <summary>XS_GET_PERMS within the transaction.</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task<IReadOnlyList<XenstorePermission>> GetPermissionsAsync(string path, CancellationToken cancellationToken = default) =>
        _client.GetPermissionsCoreAsync(Tx, path, cancellationToken);

    /// <summary>XS_SET_PERMS within the transaction (owner first, XS04).</summary>
    /// <exception cref="ArgumentException">The list is empty or does not fit in one message.</exception>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task SetPermissionsAsync(string path, IReadOnlyList<XenstorePermission> permissions, CancellationToken cancellationToken = default) =>
        _client.SetPermissionsCoreAsync(Tx, path, permissions, cancellationToken);
}
