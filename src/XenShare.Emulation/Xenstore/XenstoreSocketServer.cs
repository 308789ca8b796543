using System.Buffers.Binary;
using System.Net.Sockets;
using XenShare.Abi;

namespace XenShare.Emulation.Xenstore;

/// <summary>
/// Serves an emulated xenstore daemon on a Unix domain socket, as dom0's xenstored serves
/// <c>/run/xenstored/socket</c> (XS07): every client is a privileged dom0 connection; each message read
/// from the socket goes to the daemon whole, and replies and watch events are written back in order.
/// Real clients (Debian's <c>xenstore-read</c>, <c>-write</c>, <c>-ls</c>, <c>-rm</c>, <c>-watch</c>,
/// which honour <c>XENSTORED_PATH</c>) talk to it unchanged.
/// </summary>
/// <remarks>
/// Threads: an accept thread, and a reader thread per client (blocking, buffered receives, as xenstored
/// serves its few clients); no thread-pool hops. A reader thread hands each whole request to the daemon
/// and, once the daemon's lock is released, writes what the requests it handled produced: first its own
/// client's replies, then the other clients' watch events (each client's messages coalesced into one
/// send). So the requester's reply never waits behind another client's socket, and a watching client is
/// woken only once the daemon is done. Replies and events the daemon produces on any other thread (the
/// toolstack, a guest's <c>/dev/xen/xenbus</c>) are written at once, under the daemon's lock.
/// Each client's messages reach its socket in the daemon's order: they are queued under the daemon's lock
/// and written in queue order by whichever thread flushes first.
/// Locks: <c>_lock</c> guards the client list (a leaf). Per client, <c>SendLock</c> is held while writing
/// to its socket (one writer at a time) and <c>QueueLock</c> (a leaf) guards its queue and closed flag;
/// order: daemon lock &lt; <c>SendLock</c> &lt; <c>QueueLock</c>, and the daemon's lock is never taken
/// under either. A send that cannot complete within <see cref="SendTimeoutMs"/> (a client that stopped
/// reading) disconnects that client.
/// </remarks>
public sealed class XenstoreSocketServer : IAsyncDisposable, IDisposable
{
    private sealed class Client(Socket socket)
    {
        /// <summary>Batches up to this size are copied into one send; larger ones go message by message.</summary>
        private const int CoalesceMax = 64 * 1024;

        private List<ReadOnlyMemory<byte>> _queue = new();     // under QueueLock
        private List<ReadOnlyMemory<byte>> _sending = new();   // under SendLock
        private byte[] _coalesce = [];                          // under SendLock

        public Socket Socket { get; } = socket;
        public object SendLock { get; } = new();
        public object QueueLock { get; } = new();
        public bool Closed { get; private set; }   // under QueueLock; set with SendLock held too
        public XenstoreConnection? Connection { get; set; }
        public Thread? Reader { get; set; }

        /// <summary>Queues one message (under the daemon's lock, so in the daemon's order); false once closed.</summary>
        public bool Enqueue(ReadOnlyMemory<byte> m)
        {
            lock (QueueLock)
            {
                if (Closed) return false;
                _queue.Add(m);
                return true;
            }
        }

        /// <summary>Writes everything queued, in order, coalesced into one send a batch. A failed or timed-out
        /// send closes the client (its reader then sees the end of the stream and drops it).</summary>
        public void Flush()
        {
            lock (SendLock)
            {
                while (true)
                {
                    lock (QueueLock)
                    {
                        if (Closed || _queue.Count == 0)
                        {
                            _queue.Clear();
                            return;
                        }
                        (_queue, _sending) = (_sending, _queue);
                    }
                    try
                    {
                        int total = 0;
                        foreach (var m in _sending) total += m.Length;
                        if (_sending.Count == 1 || total > CoalesceMax)
                        {
                            foreach (var m in _sending) SendAll(m.Span);
                        }
                        else
                        {
                            if (_coalesce.Length < total) _coalesce = new byte[Math.Max(total, Math.Min(2 * _coalesce.Length, CoalesceMax))];
                            int at = 0;
                            foreach (var m in _sending)
                            {
                                m.Span.CopyTo(_coalesce.AsSpan(at));
                                at += m.Length;
                            }
                            SendAll(_coalesce.AsSpan(0, total));
                        }
                    }
                    catch (Exception e) when (e is SocketException or ObjectDisposedException)
                    {
                        Close();
                        try { Socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
                        return;
                    }
                    finally
                    {
                        _sending.Clear();
                    }
                }
            }
        }

        private void SendAll(ReadOnlySpan<byte> bytes)
        {
            while (!bytes.IsEmpty) bytes = bytes[Socket.Send(bytes)..];
        }

        /// <summary>Ends all writes; called with SendLock held, so no send is under way.</summary>
        public void Close()
        {
            lock (QueueLock)
            {
                Closed = true;
                _queue.Clear();
            }
        }
    }

    /// <summary>The clients a reader thread's requests gave output to, written after the daemon's lock is
    /// released (null on other threads: their output is written at once).</summary>
    [ThreadStatic]
    private static List<Client>? t_touched;

    /// <summary>How long a write to a client may block before the client is dropped.</summary>
    public const int SendTimeoutMs = 2000;

    private readonly object _lock = new();
    private readonly List<Client> _clients = new();
    private readonly XenstoreDaemon _daemon;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _accept;
    private int _disposed;

    private XenstoreSocketServer(XenstoreDaemon daemon, string path)
    {
        _daemon = daemon;
        Path = path;
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            _listener.Listen(64);
        }
        catch
        {
            _listener.Dispose();
            throw;
        }
        _accept = new Thread(AcceptLoop) { IsBackground = true, Name = "xenstored accept" };
        _accept.Start();
    }

    /// <summary>Binds <paramref name="path"/> (a stale socket file there is replaced; any other file is
    /// refused) and starts serving <paramref name="daemon"/>.</summary>
    public static XenstoreSocketServer Start(XenstoreDaemon daemon, string path)
    {
        ArgumentNullException.ThrowIfNull(daemon);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (File.Exists(path))
        {
            if (!IsSocket(path)) throw new IOException($"{path} exists and is not a socket; not replacing it");
            File.Delete(path);   // a stale socket of an earlier run
        }
        return new XenstoreSocketServer(daemon, path);
    }

    /// <summary>A socket file cannot be opened (open(2) gives ENXIO): that tells it from a regular file,
    /// which must never be deleted.</summary>
    private static bool IsSocket(string path)
    {
        try
        {
            using var f = File.OpenRead(path);
            return false;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The socket's path.</summary>
    public string Path { get; }

    /// <summary>Clients connected now.</summary>
    public int ClientCount { get { lock (_lock) return _clients.Count; } }

    /// <summary>Accepts on a thread of its own with blocking calls; each client gets its reader thread.</summary>
    private void AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try { s = _listener.Accept(); }
            catch (SocketException) { return; }
            catch (ObjectDisposedException) { return; }
            s.SendTimeout = SendTimeoutMs;
            var client = new Client(s);
            client.Connection = _daemon.Connect(DomainId.Dom0, m => Deliver(client, m));
            lock (_lock) _clients.Add(client);
            client.Reader = new Thread(() => ReadLoop(client)) { IsBackground = true, Name = "xenstored client" };
            client.Reader.Start();
        }
    }

    private void ReadLoop(Client c)
    {
        // Buffered: one receive usually brings a whole request (or several); complete ones are handed over,
        // then what they produced is written, the requester's own replies first.
        var buffer = new byte[4 * (XsWire.HeaderSize + XsWire.XENSTORE_PAYLOAD_MAX)];
        var touched = new List<Client>();
        int have = 0;
        try
        {
            while (true)
            {
                // poll(POLLIN) first: a thread blocked in recv() on a Unix stream socket is also woken each
                // time the peer reads what this socket sent (the write-space wake-up), a poll for input is not.
                c.Socket.Poll(-1, SelectMode.SelectRead);
                int n = c.Socket.Receive(buffer.AsSpan(have));
                if (n == 0) break;
                have += n;
                int at = 0;
                bool error = false;
                t_touched = touched;
                try
                {
                    while (have - at >= XsWire.HeaderSize)
                    {
                        uint len = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(at + 12));
                        if (len > XsWire.XENSTORE_PAYLOAD_MAX) { error = true; break; }   // XS01: a protocol error ends the client
                        int size = XsWire.HeaderSize + (int)len;
                        if (have - at < size) break;
                        if (c.Connection!.Submit(buffer.AsSpan(at, size)) < 0) { error = true; break; }
                        at += size;
                    }
                }
                finally
                {
                    t_touched = null;
                    FlushTouched(c, touched);
                }
                if (error) return;
                buffer.AsSpan(at, have - at).CopyTo(buffer);
                have -= at;
            }
        }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
        finally { Drop(c); }
    }

    /// <summary>Writes what a reader thread's requests queued: the requester's replies first, then the
    /// other clients' events. No daemon lock is held here.</summary>
    private static void FlushTouched(Client self, List<Client> touched)
    {
        if (touched.Count == 0) return;
        if (touched.Contains(self)) self.Flush();
        foreach (var other in touched)
            if (other != self) other.Flush();
        touched.Clear();
    }

    /// <summary>The daemon's delivery (under its lock): queued in order. On a reader thread of a socket
    /// server it is written after the daemon's lock is released; from any other thread it is written at
    /// once. A client that leaves its socket's buffer full (far more unread replies than any protocol use
    /// makes) for <see cref="SendTimeoutMs"/> is disconnected, so it can never hold a writer for longer.</summary>
    private static void Deliver(Client c, ReadOnlyMemory<byte> m)
    {
        if (!c.Enqueue(m)) return;
        if (t_touched is { } touched)
        {
            if (!touched.Contains(c)) touched.Add(c);
        }
        else c.Flush();
    }

    private void Drop(Client c)
    {
        lock (_lock) if (!_clients.Remove(c)) return;
        c.Connection?.Dispose();
        lock (c.SendLock) c.Close();
        try { c.Socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        c.Socket.Dispose();
    }

    /// <summary>Stops accepting, closes every client (their watches and transactions end), waits for their
    /// reader threads and removes the socket file.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel();
        try { _listener.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
        _listener.Dispose();
        _accept.Join();
        Client[] all;
        lock (_lock) all = _clients.ToArray();
        foreach (var c in all) Drop(c);
        foreach (var c in all) c.Reader?.Join();
        _stop.Dispose();
        try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>The same as <see cref="Dispose"/> (it completes synchronously).</summary>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return ValueTask.CompletedTask;
    }
}
