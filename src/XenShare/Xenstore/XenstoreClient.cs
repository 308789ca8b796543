using System.Buffers;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading.Channels;
using XenShare.Abi;

namespace XenShare.Xenstore;

/// <summary>
/// A typed client of the xenstore daemon, over the xenstored Unix socket (<see cref="ConnectSocket"/>) or
/// the guest kernel's xenbus device (<see cref="OpenXenbus"/>).
/// </summary>
/// <remarks>
/// Every request carries a request id chosen by the client; one background reader parses the daemon's
/// byte stream into messages (XS01), completes the request whose id a reply echoes and queues watch
/// events to the watch whose token they carry (XS05). Requests may be issued concurrently from any
/// number of threads. An error reply becomes a <see cref="XenstoreException"/> (XS02). A reply that breaks
/// the protocol (an unknown request id, a payload over XENSTORE_PAYLOAD_MAX, a reply of the wrong type)
/// or a failing transport breaks the connection: every pending and later request fails with
/// <see cref="IOException"/>. After <see cref="Dispose"/> requests fail with
/// <see cref="ObjectDisposedException"/>.
/// </remarks>
public sealed class XenstoreClient : IDisposable, IAsyncDisposable
{
    /// <summary>The default path of the xenstored socket.</summary>
    public const string DefaultSocketPath = "/run/xenstored/socket";

    /// <summary>The default of <see cref="MaxTransactionAttempts"/>.</summary>
    public const int DefaultMaxTransactionAttempts = 64;

    private static readonly int HeaderSize = XsWire.HeaderSize;

    private readonly IXenstoreTransport _transport;
    private readonly Lock _gate = new();
    private readonly Lock _sendLock = new();
    private readonly Dictionary<uint, PendingRequest> _pending = [];
    private readonly Queue<QueuedSend> _sendQueue = new();   // under _sendLock: requests waiting for their turn (one in flight)
    private int _sentAwaitingReply;                      // under _gate: sent, reply not read yet
    private readonly Dictionary<string, Channel<XenstoreWatchEvent>> _watches = new(StringComparer.Ordinal);
    private readonly Task _reader;
    private uint _lastReqId;
    private ConnectionState _state;
    private Exception? _failure;
    private int _maxTransactionAttempts = DefaultMaxTransactionAttempts;

    private XenstoreClient(IXenstoreTransport transport)
    {
        _transport = transport;
        if (transport.ReceiveBlocks)
        {
            // The xenbus device blocks the reading thread inside IGuestProcess.Read: give the reader a
            // thread of its own rather than pinning a thread-pool thread for the client's lifetime.
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var thread = new Thread(() =>
            {
                try { ReadLoopAsync().GetAwaiter().GetResult(); }
                finally { done.TrySetResult(); }
            })
            {
                IsBackground = true,
                Name = "xenstore reader",
            };
            _reader = done.Task;
            thread.Start();
        }
        else
        {
            _reader = Task.Run(ReadLoopAsync);
        }
    }

    private enum ConnectionState
    {
        Open,
        Broken,
        Disposed,
    }

    /// <summary>Connects to the xenstored Unix domain socket at <paramref name="path"/>.</summary>
    /// <exception cref="System.Net.Sockets.SocketException">The socket cannot be connected.</exception>
    public static XenstoreClient ConnectSocket(string path = DefaultSocketPath)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new XenstoreClient(SocketTransport.Connect(path));
    }

    /// <summary>Opens <c>/dev/xen/xenbus</c> in <paramref name="process"/> (XS07) and talks to xenstore
    /// through the guest kernel. The seam's Close must end a Read blocked on the fd: that is how
    /// disposal stops the reader thread.</summary>
    /// <exception cref="Api.XenShareException">The device cannot be opened (the errno of open(2)).</exception>
    public static XenstoreClient OpenXenbus(IGuestProcess process)
    {
        ArgumentNullException.ThrowIfNull(process);
        return new XenstoreClient(XenbusTransport.Open(process));
    }

    /// <summary>How many times <see cref="TransactionAsync{T}"/> runs its body when the commit keeps
    /// answering EAGAIN (XS06) before it gives up; at least 1. Default
    /// <see cref="DefaultMaxTransactionAttempts"/>.</summary>
    public int MaxTransactionAttempts
    {
        get => Volatile.Read(ref _maxTransactionAttempts);
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, 1);
            Volatile.Write(ref _maxTransactionAttempts, value);
        }
    }

    /// <summary>Completes when the background reader has stopped (tests check disposal with it).</summary>
    internal Task ReaderCompletion => _reader;

    // ---- Node operations (XS03, XS04); the transaction offers the same ones with its tx_id. ----

    /// <summary>XS_READ: the value of the node at <paramref name="path"/>.</summary>
    /// <exception cref="XenstoreException">The daemon refused (ENOENT for a missing node, EACCES).</exception>
    public Task<byte[]> ReadAsync(string path, CancellationToken cancellationToken = default) =>
        ReadCoreAsync(0, path, cancellationToken);

    /// <summary>XS_READ: the value of the node at <paramref name="path"/> decoded as UTF-8.</summary>
    /// <exception cref="XenstoreException">The daemon refused (ENOENT for a missing node, EACCES).</exception>
    public Task<string> ReadStringAsync(string path, CancellationToken cancellationToken = default) =>
        ReadStringCoreAsync(0, path, cancellationToken);

    /// <summary>XS_READ as UTF-8, or null when the node does not exist (ENOENT).</summary>
    /// <exception cref="XenstoreException">The daemon refused for another reason.</exception>
    public Task<string?> TryReadStringAsync(string path, CancellationToken cancellationToken = default) =>
        TryReadStringCoreAsync(0, path, cancellationToken);

    /// <summary>XS_WRITE: sets the value of the node at <paramref name="path"/>, creating it (and missing
    /// parents) when needed.</summary>
    /// <exception cref="ArgumentException">Path and value do not fit in one message.</exception>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task WriteAsync(string path, ReadOnlyMemory<byte> value, CancellationToken cancellationToken = default) =>
        WriteCoreAsync(0, path, value, cancellationToken);

    /// <summary>XS_WRITE with a UTF-8 value.</summary>
    /// <exception cref="ArgumentException">Path and value do not fit in one message.</exception>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task WriteAsync(string path, string value, CancellationToken cancellationToken = default) =>
        WriteCoreAsync(0, path, value, cancellationToken);

    /// <summary>XS_MKDIR: creates the node at <paramref name="path"/> with an empty value (no error if it
    /// exists).</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task MkdirAsync(string path, CancellationToken cancellationToken = default) =>
        SimpleCoreAsync(XsWire.XS_MKDIR, 0, path, cancellationToken);

    /// <summary>XS_RM: removes the node at <paramref name="path"/> and everything below it.</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task RemoveAsync(string path, CancellationToken cancellationToken = default) =>
        SimpleCoreAsync(XsWire.XS_RM, 0, path, cancellationToken);

    /// <summary>XS_DIRECTORY: the names (not paths) of the children of <paramref name="path"/>.</summary>
    /// <exception cref="XenstoreException">The daemon refused (ENOENT, or E2BIG for a directory whose
    /// listing does not fit in one message).</exception>
    public Task<IReadOnlyList<string>> DirectoryAsync(string path, CancellationToken cancellationToken = default) =>
        DirectoryCoreAsync(0, path, cancellationToken);

    /// <summary>XS_GET_PERMS: the permission list of <paramref name="path"/>, owner first (XS04).</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task<IReadOnlyList<XenstorePermission>> GetPermissionsAsync(string path, CancellationToken cancellationToken = default) =>
        GetPermissionsCoreAsync(0, path, cancellationToken);

    /// <summary>XS_SET_PERMS: replaces the permission list of <paramref name="path"/>; the first entry
    /// names the owner and the default access (XS04).</summary>
    /// <exception cref="ArgumentException">The list is empty or does not fit in one message.</exception>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task SetPermissionsAsync(string path, IReadOnlyList<XenstorePermission> permissions, CancellationToken cancellationToken = default) =>
        SetPermissionsCoreAsync(0, path, permissions, cancellationToken);

    // ---- Domain operations ----

    /// <summary>XS_GET_DOMAIN_PATH: the home path of <paramref name="domain"/> ("/local/domain/5").</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<string> GetDomainPathAsync(DomainId domain, CancellationToken cancellationToken = default)
    {
        var message = XsMessage.Create();
        message.AppendZ(domain.Value.ToString(CultureInfo.InvariantCulture));
        byte[] reply = await ExecuteAsync(message, XsWire.XS_GET_DOMAIN_PATH, 0, null, true, cancellationToken).ConfigureAwait(false);
        return XsMessage.FirstString(reply);
    }

    /// <summary>XS_IS_DOMAIN_INTRODUCED: whether xenstore knows <paramref name="domain"/>.</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<bool> IsDomainIntroducedAsync(DomainId domain, CancellationToken cancellationToken = default)
    {
        var message = XsMessage.Create();
        message.AppendZ(domain.Value.ToString(CultureInfo.InvariantCulture));
        byte[] reply = await ExecuteAsync(message, XsWire.XS_IS_DOMAIN_INTRODUCED, 0, null, true, cancellationToken).ConfigureAwait(false);
        return XsMessage.FirstString(reply) switch
        {
            "T" => true,
            "F" => false,
            var other => throw new IOException($"XS_IS_DOMAIN_INTRODUCED answered '{other}', not T or F"),
        };
    }

    /// <summary>XS_INTRODUCE (toolstack, dom0 only): tells xenstore about a new domain's ring page
    /// (<paramref name="frame"/>) and event channel.</summary>
    /// <exception cref="XenstoreException">The daemon refused (EACCES outside dom0).</exception>
    public Task IntroduceDomainAsync(DomainId domain, ulong frame, EventPort port, CancellationToken cancellationToken = default)
    {
        var message = XsMessage.Create();
        message.AppendZ(domain.Value.ToString(CultureInfo.InvariantCulture));
        message.AppendZ(frame.ToString(CultureInfo.InvariantCulture));
        message.AppendZ(port.Value.ToString(CultureInfo.InvariantCulture));
        return ExecuteAsync(message, XsWire.XS_INTRODUCE, 0, null, false, cancellationToken);
    }

    /// <summary>XS_RELEASE (toolstack, dom0 only): tells xenstore a domain is gone.</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task ReleaseDomainAsync(DomainId domain, CancellationToken cancellationToken = default)
    {
        var message = XsMessage.Create();
        message.AppendZ(domain.Value.ToString(CultureInfo.InvariantCulture));
        return ExecuteAsync(message, XsWire.XS_RELEASE, 0, null, false, cancellationToken);
    }

    // ---- Watches (XS05) ----

    /// <summary>
    /// XS_WATCH: the changes of <paramref name="path"/> and the nodes below it, as an asynchronous stream.
    /// </summary>
    /// <remarks>
    /// The watch is registered when the enumeration starts (the first MoveNextAsync) and removed with
    /// XS_UNWATCH when the enumerator is disposed or <paramref name="cancellationToken"/> cancels it. The
    /// daemon fires a watch once right after registering it, so the first event names the watched path.
    /// Events arrive in the daemon's order and are queued without bound until read, so none is lost.
    /// A token may be used by one active watch of this client at a time. When the connection breaks the
    /// enumeration throws <see cref="IOException"/>; when the client is disposed,
    /// <see cref="ObjectDisposedException"/>.
    /// </remarks>
    /// <param name="path">The path to watch (absolute, relative, or a special <c>@</c> path).</param>
    /// <param name="token">The token the events carry.</param>
    /// <param name="cancellationToken">Ends the enumeration (and the watch).</param>
    public IAsyncEnumerable<XenstoreWatchEvent> WatchAsync(string path, string token, CancellationToken cancellationToken = default)
    {
        XsMessage.ValidatePath(path, nameof(path));
        XsMessage.ValidateToken(token, nameof(token));
        return WatchIteratorAsync(path, token, cancellationToken);
    }

    private async IAsyncEnumerable<XenstoreWatchEvent> WatchIteratorAsync(
        string path, string token, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var channel = Channel.CreateUnbounded<XenstoreWatchEvent>(
            new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        lock (_gate)
        {
            ThrowIfUnusable();
            if (!_watches.TryAdd(token, channel))
                throw new InvalidOperationException($"the watch token '{token}' is already in use on this connection");
        }

        bool registered = false;
        try
        {
            // The channel is in place before XS_WATCH goes out: the daemon's first event may arrive
            // before its OK reply (XS05), and it must not be dropped as an event for an unknown token.
            var message = XsMessage.Create();
            message.AppendZ(path);
            message.AppendZ(token);
            // Not cancellable once sent: abandoning the reply would leave a registered watch nobody removes.
            await ExecuteAsync(message, XsWire.XS_WATCH, 0, path, false, cancellationToken).ConfigureAwait(false);
            registered = true;
            while (await channel.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                while (channel.Reader.TryRead(out var watchEvent))
                    yield return watchEvent;
        }
        finally
        {
            bool mine;
            lock (_gate)
            {
                // A broken or disposed connection already dropped every watch (and the daemon forgets a
                // closed connection's watches): then there is nothing to unregister.
                mine = _watches.TryGetValue(token, out var current) && current == channel;
                if (mine) _watches.Remove(token);
            }
            if (registered && mine) await UnwatchQuietlyAsync(path, token).ConfigureAwait(false);
        }
    }

    private async Task UnwatchQuietlyAsync(string path, string token)
    {
        try
        {
            var message = XsMessage.Create();
            message.AppendZ(path);
            message.AppendZ(token);
            await ExecuteAsync(message, XsWire.XS_UNWATCH, 0, path, false, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is XenstoreException or IOException or ObjectDisposedException)
        {
            // Disposing an enumerator must not throw; a connection that failed meanwhile has no watch left.
        }
    }

    // ---- Transactions (XS06) ----

    /// <summary>
    /// Runs <paramref name="body"/> inside a xenstore transaction and commits it. When the commit answers
    /// EAGAIN (another connection changed what the transaction read) the whole body runs again in a new
    /// transaction, up to <see cref="MaxTransactionAttempts"/> times; then the EAGAIN
    /// <see cref="XenstoreException"/> is thrown. When the body throws, the transaction is aborted and the
    /// exception propagates. The body must not use the transaction after it returns.
    /// </summary>
    /// <returns>The body's result from the attempt that committed.</returns>
    public async Task<T> TransactionAsync<T>(
        Func<XenstoreTransaction, CancellationToken, Task<T>> body, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(body);
        int maxAttempts = MaxTransactionAttempts;
        for (int attempt = 1; ; attempt++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var transaction = await StartTransactionAsync(cancellationToken).ConfigureAwait(false);
            T result;
            try
            {
                result = await body(transaction, cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                await EndTransactionQuietlyAsync(transaction).ConfigureAwait(false);
                throw;
            }

            try
            {
                await EndTransactionAsync(transaction, commit: true).ConfigureAwait(false);
                return result;
            }
            catch (XenstoreException e) when (e.Errno == Errno.EAGAIN && attempt < maxAttempts)
            {
                // XS06: the daemon discarded the transaction; run the body again on fresh data.
            }
        }
    }

    /// <summary>Runs <paramref name="body"/> inside a transaction with the retry rules of
    /// <see cref="TransactionAsync{T}"/>.</summary>
    public Task TransactionAsync(Func<XenstoreTransaction, CancellationToken, Task> body, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(body);
        return TransactionAsync(async (transaction, ct) =>
        {
            await body(transaction, ct).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    private async Task<XenstoreTransaction> StartTransactionAsync(CancellationToken cancellationToken)
    {
        var message = XsMessage.Create();
        message.AppendNul(); // XS06: the payload is the empty string
        // Not cancellable once sent: an abandoned reply would leak an open transaction in the daemon.
        byte[] reply = await ExecuteAsync(message, XsWire.XS_TRANSACTION_START, 0, null, false, cancellationToken).ConfigureAwait(false);
        string text = XsMessage.FirstString(reply);
        if (!uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) || id == 0)
            throw new IOException($"XS_TRANSACTION_START answered '{text}', not a transaction id");
        return new XenstoreTransaction(this, id);
    }

    private Task<byte[]> EndTransactionAsync(XenstoreTransaction transaction, bool commit)
    {
        transaction.MarkEnded();
        var message = XsMessage.Create();
        message.AppendZ(commit ? "T" : "F");
        return ExecuteAsync(message, XsWire.XS_TRANSACTION_END, transaction.Id, null, false, CancellationToken.None);
    }

    private async Task EndTransactionQuietlyAsync(XenstoreTransaction transaction)
    {
        try
        {
            await EndTransactionAsync(transaction, commit: false).ConfigureAwait(false);
        }
        catch (Exception e) when (e is XenstoreException or IOException or ObjectDisposedException)
        {
            // The body's exception is the one that matters; a closed connection aborts the transaction anyway.
        }
    }

    // ---- Cores shared with XenstoreTransaction (txId 0 = none) ----

    internal Task<byte[]> ReadCoreAsync(uint txId, string path, CancellationToken cancellationToken)
    {
        XsMessage.ValidatePath(path, nameof(path));
        var message = XsMessage.Create();
        message.AppendZ(path);
        return ExecuteAsync(message, XsWire.XS_READ, txId, path, true, cancellationToken);
    }

    internal async Task<string> ReadStringCoreAsync(uint txId, string path, CancellationToken cancellationToken) =>
        Encoding.UTF8.GetString(await ReadCoreAsync(txId, path, cancellationToken).ConfigureAwait(false));

    internal async Task<string?> TryReadStringCoreAsync(uint txId, string path, CancellationToken cancellationToken)
    {
        try
        {
            return await ReadStringCoreAsync(txId, path, cancellationToken).ConfigureAwait(false);
        }
        catch (XenstoreException e) when (e.Errno == Errno.ENOENT)
        {
            return null;
        }
    }

    internal Task WriteCoreAsync(uint txId, string path, ReadOnlyMemory<byte> value, CancellationToken cancellationToken)
    {
        XsMessage.ValidatePath(path, nameof(path));
        var message = XsMessage.Create();
        // XS03: path NUL value, the value without a terminator.
        message.AppendZ(path);
        message.Append(value.Span);
        return ExecuteAsync(message, XsWire.XS_WRITE, txId, path, true, cancellationToken);
    }

    internal Task WriteCoreAsync(uint txId, string path, string value, CancellationToken cancellationToken)
    {
        XsMessage.ValidatePath(path, nameof(path));
        ArgumentNullException.ThrowIfNull(value);
        var message = XsMessage.Create();
        message.AppendZ(path);
        message.Append(value);
        return ExecuteAsync(message, XsWire.XS_WRITE, txId, path, true, cancellationToken);
    }

    internal Task SimpleCoreAsync(uint type, uint txId, string path, CancellationToken cancellationToken)
    {
        XsMessage.ValidatePath(path, nameof(path));
        var message = XsMessage.Create();
        message.AppendZ(path);
        return ExecuteAsync(message, type, txId, path, true, cancellationToken);
    }

    internal async Task<IReadOnlyList<string>> DirectoryCoreAsync(uint txId, string path, CancellationToken cancellationToken)
    {
        XsMessage.ValidatePath(path, nameof(path));
        var message = XsMessage.Create();
        message.AppendZ(path);
        byte[] reply = await ExecuteAsync(message, XsWire.XS_DIRECTORY, txId, path, true, cancellationToken).ConfigureAwait(false);
        var names = XsMessage.SplitStrings(reply);
        // A node name is never empty: an empty entry can only be padding after the last NUL.
        names.RemoveAll(static name => name.Length == 0);
        return names;
    }

    internal async Task<IReadOnlyList<XenstorePermission>> GetPermissionsCoreAsync(uint txId, string path, CancellationToken cancellationToken)
    {
        XsMessage.ValidatePath(path, nameof(path));
        var message = XsMessage.Create();
        message.AppendZ(path);
        byte[] reply = await ExecuteAsync(message, XsWire.XS_GET_PERMS, txId, path, true, cancellationToken).ConfigureAwait(false);
        var permissions = new List<XenstorePermission>();
        foreach (string entry in XsMessage.SplitStrings(reply))
        {
            if (entry.Length == 0) continue;
            if (!XenstorePermission.TryParse(entry, out var permission))
                throw new IOException($"XS_GET_PERMS answered '{entry}', not a permission");
            permissions.Add(permission);
        }
        return permissions;
    }

    internal Task SetPermissionsCoreAsync(uint txId, string path, IReadOnlyList<XenstorePermission> permissions, CancellationToken cancellationToken)
    {
        XsMessage.ValidatePath(path, nameof(path));
        ArgumentNullException.ThrowIfNull(permissions);
        // XS04: the first entry is the owner; a list without one means nothing to the daemon.
        if (permissions.Count == 0) throw new ArgumentException("a permission list needs at least the owner entry", nameof(permissions));
        var message = XsMessage.Create();
        message.AppendZ(path);
        Span<byte> entry = stackalloc byte[8]; // a letter and at most 5 digits
        foreach (var permission in permissions)
        {
            // Checks the access value before anything is sent (throws for an undefined one).
            char letter;
            try
            {
                letter = XenstorePermission.LetterOf(permission.Access);
            }
            catch
            {
                message.Release();
                throw;
            }
            entry[0] = (byte)letter;
            permission.Domain.Value.TryFormat(entry[1..], out int digits, default, CultureInfo.InvariantCulture);
            message.Append(entry[..(1 + digits)]);
            message.AppendNul();
        }
        return ExecuteAsync(message, XsWire.XS_SET_PERMS, txId, path, true, cancellationToken);
    }

    // ---- Request bookkeeping (XS01) ----

    private async Task<byte[]> ExecuteAsync(
        XsMessage message, uint type, uint txId, string? path, bool cancellable, CancellationToken cancellationToken)
    {
        Task<Reply> pending = Submit(ref message, type, txId, cancellationToken);
        Reply reply;
        if (!cancellable)
        {
            reply = await pending.ConfigureAwait(false);
        }
        else
        {
            try
            {
                reply = await pending.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!pending.IsCompleted)
            {
                // A cancelled wait abandons only the wait: the request stays registered so its late
                // reply is recognised and dropped instead of looking like an unknown req_id. Should the
                // connection fail first, nobody is left to observe that failure: observe it here.
                _ = pending.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                    TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
                throw;
            }
        }
        if (reply.Type == XsWire.XS_ERROR)
        {
            // XS02: the payload is the errno name, NUL-terminated.
            throw new XenstoreException(XsWire.ErrnoOf(XsMessage.FirstString(reply.Payload)), XsMessage.NameOf(type), path);
        }
        return reply.Payload;
    }

    private Task<Reply> Submit(ref XsMessage message, uint type, uint txId, CancellationToken cancellationToken)
    {
        try
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (message.PayloadLength > _transport.MaxRequestPayload)
                throw new ArgumentException(
                    $"the request payload of {message.PayloadLength} bytes exceeds the {_transport.MaxRequestPayload} bytes this connection carries");
            var pending = new PendingRequest(type);
            uint reqId;
            lock (_gate)
            {
                ThrowIfUnusable();
                // Request ids only need to be unique among pending requests; 0 is left to watch events.
                do { reqId = unchecked(++_lastReqId); }
                while (reqId == 0 || _pending.ContainsKey(reqId));
                _pending.Add(reqId, pending);
            }

            try
            {
                // One whole message per send, never interleaved with another thread's (XS01, XS07).
                lock (_sendLock)
                {
                    if (_transport.OneRequestInFlight)
                    {
                        // See IXenstoreTransport: the request waits its turn in order; PumpSendQueue writes it
                        // once every earlier request of the connection has its reply read.
                        _sendQueue.Enqueue(new QueuedSend(message.Finish(type, reqId, txId).ToArray(), reqId, pending));
                        PumpSendQueueLocked();
                    }
                    else
                    {
                        _transport.Send(message.Finish(type, reqId, txId));
                        CountSent(reqId, pending);
                    }
                }
            }
            catch (Exception e) when (e is IOException or ObjectDisposedException)
            {
                lock (_gate) _pending.Remove(reqId);
                // Part of the message may be on the wire: the stream can no longer be trusted.
                if (e is IOException) Fail(e);
                lock (_gate) ThrowIfUnusable();
                throw;
            }
            return pending.Completion.Task;
        }
        finally
        {
            message.Release();
        }
    }

    /// <summary>Counts a request just sent (under the send lock) while its reply is still to come (the reader
    /// may have been quicker).</summary>
    private void CountSent(uint reqId, PendingRequest pending)
    {
        lock (_gate)
        {
            if (!_pending.ContainsKey(reqId)) return;
            pending.Sent = true;
            _sentAwaitingReply++;
        }
    }

    /// <summary>Under _gate: the reply of a counted request was read.</summary>
    private void ReplyRead(PendingRequest request)
    {
        if (!request.Sent) return;
        request.Sent = false;
        _sentAwaitingReply--;
    }

    /// <summary>Under _sendLock, one-in-flight transports only: writes the oldest queued request when no
    /// request sent earlier awaits its reply. Called after queueing and by the reader after each reply. A
    /// request whose wait was abandoned still goes out (its late reply is then recognised and dropped); one
    /// failed by a broken or disposed connection is skipped.</summary>
    /// <exception cref="IOException">The transport failed (the caller fails the connection).</exception>
    private void PumpSendQueueLocked()
    {
        while (_sendQueue.Count > 0)
        {
            var next = _sendQueue.Peek();
            lock (_gate)
            {
                if (_state != ConnectionState.Open) { _sendQueue.Clear(); return; }
                if (_sentAwaitingReply > 0) return;
                _sendQueue.Dequeue();
                if (!_pending.ContainsKey(next.ReqId)) continue;
            }
            _transport.Send(next.Bytes);
            CountSent(next.ReqId, next.Pending);
        }
    }

    /// <summary>The reader's turn after a reply: the next queued request may go out now.</summary>
    private void PumpAfterReply()
    {
        try
        {
            lock (_sendLock) PumpSendQueueLocked();
        }
        catch (IOException e)
        {
            Fail(e);
        }
        catch (ObjectDisposedException)
        {
            // Disposed meanwhile: Dispose failed every pending request.
        }
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_state == ConnectionState.Disposed, this);
        if (_state == ConnectionState.Broken) throw BrokenException();
    }

    private IOException BrokenException() =>
        new("the xenstore connection is broken: " + _failure?.Message, _failure);

    private async Task ReadLoopAsync()
    {
        // Room for the largest message, so a partial one can always be completed in place (XS01).
        byte[] buffer = ArrayPool<byte>.Shared.Rent(HeaderSize + XsWire.XENSTORE_PAYLOAD_MAX);
        int filled = 0;
        try
        {
            while (true)
            {
                int n = await _transport.ReceiveAsync(buffer.AsMemory(filled), CancellationToken.None).ConfigureAwait(false);
                if (n <= 0) throw new IOException("the xenstore daemon closed the connection");
                if (n > buffer.Length - filled) throw new IOException("the transport reported more bytes than it was given room for");
                filled += n;
                int consumed = DispatchAll(buffer.AsSpan(0, filled));
                if (consumed > 0)
                {
                    buffer.AsSpan(consumed, filled - consumed).CopyTo(buffer);
                    filled -= consumed;
                }
            }
        }
        catch (Exception e)
        {
            // Whatever stopped the reader (a protocol violation, a failing or closed transport), the
            // connection is over; after Dispose this is a no-op.
            Fail(e as IOException ?? new IOException("the xenstore reader failed: " + e.Message, e));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private int DispatchAll(ReadOnlySpan<byte> data)
    {
        int consumed = 0;
        while (data.Length - consumed >= HeaderSize)
        {
            var header = MemoryMarshal.Read<xsd_sockmsg>(data[consumed..]);
            // XS01: checked before the length is used, so a hostile header cannot reach past the buffer.
            if (header.len > XsWire.XENSTORE_PAYLOAD_MAX)
                throw new IOException($"xenstore message of {header.len} bytes exceeds XENSTORE_PAYLOAD_MAX");
            int total = HeaderSize + (int)header.len;
            if (data.Length - consumed < total) break;
            Dispatch(header, data.Slice(consumed + HeaderSize, (int)header.len));
            consumed += total;
        }
        return consumed;
    }

    private void Dispatch(in xsd_sockmsg header, ReadOnlySpan<byte> payload)
    {
        if (header.type == XsWire.XS_WATCH_EVENT)
        {
            // XS05: "path NUL token NUL", unsolicited, between replies.
            var parts = XsMessage.SplitStrings(payload);
            if (parts.Count < 2) throw new IOException("malformed XS_WATCH_EVENT");
            Channel<XenstoreWatchEvent>? channel;
            lock (_gate) _watches.TryGetValue(parts[XsWire.XS_WATCH_TOKEN], out channel);
            // No channel: the watch was just removed and the daemon fired before it saw XS_UNWATCH.
            channel?.Writer.TryWrite(new XenstoreWatchEvent(parts[XsWire.XS_WATCH_PATH], parts[XsWire.XS_WATCH_TOKEN]));
            return;
        }

        PendingRequest? pending;
        lock (_gate)
        {
            if (!_pending.TryGetValue(header.req_id, out pending))
                throw new IOException($"xenstore reply with unknown req_id {header.req_id}");
            if (header.type != pending.Type && header.type != XsWire.XS_ERROR)
                throw new IOException($"{XsMessage.NameOf(pending.Type)} answered with {XsMessage.NameOf(header.type)}");
            _pending.Remove(header.req_id);
            ReplyRead(pending);
        }
        pending.Completion.TrySetResult(new Reply(header.type, payload.ToArray()));
        if (_transport.OneRequestInFlight) PumpAfterReply();
    }

    private void Fail(Exception cause)
    {
        List<PendingRequest> pending;
        List<Channel<XenstoreWatchEvent>> watches;
        lock (_gate)
        {
            if (_state != ConnectionState.Open) return;
            _state = ConnectionState.Broken;
            _failure = cause;
            pending = [.. _pending.Values];
            watches = [.. _watches.Values];
            _pending.Clear();
            _watches.Clear();
            _sentAwaitingReply = 0;
        }
        foreach (var request in pending) request.Completion.TrySetException(BrokenException());
        foreach (var watch in watches) watch.Writer.TryComplete(BrokenException());
        _transport.Dispose();
    }

    /// <summary>Closes the connection: pending requests and watch enumerations fail with
    /// <see cref="ObjectDisposedException"/> and the reader stops. The daemon drops the connection's
    /// watches and open transactions itself.</summary>
    public void Dispose()
    {
        List<PendingRequest> pending;
        List<Channel<XenstoreWatchEvent>> watches;
        lock (_gate)
        {
            if (_state == ConnectionState.Disposed) return;
            _state = ConnectionState.Disposed;
            pending = [.. _pending.Values];
            watches = [.. _watches.Values];
            _pending.Clear();
            _watches.Clear();
            _sentAwaitingReply = 0;
        }
        foreach (var request in pending) request.Completion.TrySetException(new ObjectDisposedException(nameof(XenstoreClient)));
        foreach (var watch in watches) watch.Writer.TryComplete(new ObjectDisposedException(nameof(XenstoreClient)));
        _transport.Dispose();
    }

    /// <summary>Disposes the client; for the socket transport it also waits for the reader to stop
    /// (closing a socket always ends its pending receive).</summary>
    public async ValueTask DisposeAsync()
    {
        Dispose();
        if (!_transport.ReceiveBlocks) await _reader.ConfigureAwait(false);
    }

    private readonly record struct Reply(uint Type, byte[] Payload);

    private readonly record struct QueuedSend(byte[] Bytes, uint ReqId, PendingRequest Pending);

    private sealed class PendingRequest(uint type)
    {
        public uint Type { get; } = type;

        public TaskCompletionSource<Reply> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Sent and counted in <see cref="_sentAwaitingReply"/> (under the client's gate).</summary>
        public bool Sent { get; set; }
    }
}
