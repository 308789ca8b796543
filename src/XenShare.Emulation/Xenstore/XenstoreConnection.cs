using System.Buffers.Binary;
using System.Text;
using XenShare.Abi;

namespace XenShare.Emulation.Xenstore;

/// <summary>
/// One client connection to the emulated xenstore daemon (XS07): a process's xenstored socket, or an open
/// <c>/dev/xen/xenbus</c> of a guest. Requests go in whole with <see cref="Submit"/>; replies and watch
/// events come out through the delivery callback given at <see cref="XenstoreDaemon.Connect"/>, in order.
/// Closing it ends its watches and transactions.
/// </summary>
/// <remarks>State (watches, transactions) is guarded by the daemon's lock. The delivery callback runs
/// under that lock, so it must only queue the bytes (never block, never call back into the daemon).</remarks>
public sealed class XenstoreConnection : IDisposable
{
    internal sealed record Watch(string Path, string Token, string AbsolutePath, bool Relative);

    private readonly Action<ReadOnlyMemory<byte>> _deliver;

    internal XenstoreConnection(XenstoreDaemon daemon, DomainId domain, Action<ReadOnlyMemory<byte>> deliver)
    {
        Daemon = daemon;
        Domain = domain;
        _deliver = deliver;
    }

    internal XenstoreDaemon Daemon { get; }

    /// <summary>The domain this connection speaks for (dom0 is privileged).</summary>
    public DomainId Domain { get; }

    /// <summary>True once closed (by <see cref="Dispose"/>, a protocol error, or the domain's release).</summary>
    public bool IsClosed { get; internal set; }

    internal List<Watch> Watches { get; } = new();

    internal Dictionary<uint, XenstoreDaemon.Transaction> Transactions { get; } = new();

    internal uint NextTransactionId { get; set; } = 1;

    /// <summary>Processes one whole message (the 16-byte <see cref="xsd_sockmsg"/> header and exactly its
    /// payload). Returns 0, or -EINVAL for a malformed message (payload over XENSTORE_PAYLOAD_MAX, or a
    /// length that does not match): the connection is then closed, as xenstored drops such a client.
    /// -ENOTCONN once closed.</summary>
    public int Submit(ReadOnlySpan<byte> message) => Daemon.Submit(this, message);

    /// <summary>Closes the connection: its watches and transactions end (XS07).</summary>
    public void Dispose() => Daemon.Close(this);

    /// <summary>Queues a watch event: the path and the token, each NUL-terminated (under the daemon's lock).</summary>
    internal void SendEvent(string path, string token)
    {
        int pathBytes = Encoding.UTF8.GetByteCount(path);
        int length = pathBytes + 1 + Encoding.UTF8.GetByteCount(token) + 1;
        var msg = new byte[XsWire.HeaderSize + length];
        BinaryPrimitives.WriteUInt32LittleEndian(msg, XsWire.XS_WATCH_EVENT);
        BinaryPrimitives.WriteUInt32LittleEndian(msg.AsSpan(12), (uint)length);
        Encoding.UTF8.GetBytes(path, msg.AsSpan(XsWire.HeaderSize));
        Encoding.UTF8.GetBytes(token, msg.AsSpan(XsWire.HeaderSize + pathBytes + 1));
        _deliver(msg);
    }

    /// <summary>Queues one reply or event: header and payload (called under the daemon's lock).</summary>
    internal void Send(uint type, uint reqId, uint txId, ReadOnlySpan<byte> payload)
    {
        var msg = new byte[XsWire.HeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(msg, type);
        BinaryPrimitives.WriteUInt32LittleEndian(msg.AsSpan(4), reqId);
        BinaryPrimitives.WriteUInt32LittleEndian(msg.AsSpan(8), txId);
        BinaryPrimitives.WriteUInt32LittleEndian(msg.AsSpan(12), (uint)payload.Length);
        payload.CopyTo(msg.AsSpan(XsWire.HeaderSize));
        _deliver(msg);
    }
}
