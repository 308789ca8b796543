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
/// <remarks>Lock: <c>_lock</c> guards the client list (a leaf). Each client has a reader thread (blocking,
/// buffered receives, as xenstored serves its few clients); replies and events are written by the daemon's
/// delivery straight to the client's socket under the client's send lock (daemon &lt; client send lock),
/// so they stay in order; a send that cannot complete within <see cref="SendTimeoutMs"/> (a client that
/// stopped reading) disconnects that client.</remarks>
public sealed class XenstoreSocketServer : IAsyncDisposable, IDisposable
{
    private sealed class Client(Socket socket)
    {
        public Socket Socket { get; } = socket;
        public object SendLock { get; } = new();
        public bool Closed { get; set; }
        public XenstoreConnection? Connection { get; set; }
        public Thread? Reader { get; set; }
    }

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
        // Buffered: one receive usually brings a whole request (or several); complete ones are handed over.
        var buffer = new byte[4 * (XsWire.HeaderSize + XsWire.XENSTORE_PAYLOAD_MAX)];
        int have = 0;
        try
        {
            while (true)
            {
                int n = c.Socket.Receive(buffer.AsSpan(have));
                if (n == 0) break;
                have += n;
                int at = 0;
                while (have - at >= XsWire.HeaderSize)
                {
                    uint len = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(at + 12));
                    if (len > XsWire.XENSTORE_PAYLOAD_MAX) return;   // XS01: a protocol error ends the client
                    int size = XsWire.HeaderSize + (int)len;
                    if (have - at < size) break;
                    if (c.Connection!.Submit(buffer.AsSpan(at, size)) < 0) return;
                    at += size;
                }
                buffer.AsSpan(at, have - at).CopyTo(buffer);
                have -= at;
            }
        }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
        finally { Drop(c); }
    }

    /// <summary>The daemon's delivery (under its lock): written straight to the socket, in order. A client
    /// that leaves its socket's buffer full (far more unread replies than any protocol use makes) for
    /// <see cref="SendTimeoutMs"/> is disconnected, so it can never hold the daemon for longer.</summary>
    private static void Deliver(Client c, ReadOnlyMemory<byte> m)
    {
        lock (c.SendLock)
        {
            if (c.Closed) return;
            try
            {
                c.Socket.Send(m.Span);
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
                c.Closed = true;
                try { c.Socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
            }
        }
    }

    private void Drop(Client c)
    {
        lock (_lock) if (!_clients.Remove(c)) return;
        c.Connection?.Dispose();
        lock (c.SendLock) c.Closed = true;
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
