using System.Buffers.Binary;
using System.Net.Sockets;
using System.Threading.Channels;
using XenShare.Abi;

namespace XenShare.Emulation.Xenstore;

/// <summary>
/// Serves an emulated xenstore daemon on a Unix domain socket, as dom0's xenstored serves
/// <c>/run/xenstored/socket</c> (XS07): every client is a privileged dom0 connection; each message read
/// from the socket goes to the daemon whole, and replies and watch events are written back in order.
/// Real clients (Debian's <c>xenstore-read</c>, <c>-write</c>, <c>-ls</c>, <c>-rm</c>, <c>-watch</c>,
/// which honour <c>XENSTORED_PATH</c>) talk to it unchanged.
/// </summary>
/// <remarks>Lock: <c>_lock</c> guards the client list (a leaf). Each client has a reader task and a writer
/// task fed by a channel, so the daemon's delivery (under its lock) only queues.</remarks>
public sealed class XenstoreSocketServer : IAsyncDisposable, IDisposable
{
    private sealed class Client(Socket socket)
    {
        public Socket Socket { get; } = socket;
        public Channel<ReadOnlyMemory<byte>> Outgoing { get; } = Channel.CreateUnbounded<ReadOnlyMemory<byte>>(new UnboundedChannelOptions { SingleReader = true });
        public XenstoreConnection? Connection { get; set; }
        public Task? Pump { get; set; }
    }

    private readonly object _lock = new();
    private readonly List<Client> _clients = new();
    private readonly XenstoreDaemon _daemon;
    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _accept;
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
        _accept = AcceptLoop();
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

    private async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try { s = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { return; }
            catch (SocketException) { return; }
            catch (ObjectDisposedException) { return; }
            var client = new Client(s);
            client.Connection = _daemon.Connect(DomainId.Dom0, m => client.Outgoing.Writer.TryWrite(m));
            lock (_lock) _clients.Add(client);
            client.Pump = Task.WhenAll(ReadLoop(client), WriteLoop(client));
        }
    }

    private async Task ReadLoop(Client c)
    {
        var buffer = new byte[XsWire.HeaderSize + XsWire.XENSTORE_PAYLOAD_MAX];
        try
        {
            while (true)
            {
                if (!await Fill(c.Socket, buffer.AsMemory(0, XsWire.HeaderSize)).ConfigureAwait(false)) break;
                uint len = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(12));
                if (len > XsWire.XENSTORE_PAYLOAD_MAX) break;   // XS01: a protocol error ends the client
                if (len > 0 && !await Fill(c.Socket, buffer.AsMemory(XsWire.HeaderSize, (int)len)).ConfigureAwait(false)) break;
                if (c.Connection!.Submit(buffer.AsSpan(0, XsWire.HeaderSize + (int)len)) < 0) break;
            }
        }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
        catch (OperationCanceledException) { }
        finally { Drop(c); }
    }

    private async Task<bool> Fill(Socket s, Memory<byte> into)
    {
        int got = 0;
        while (got < into.Length)
        {
            int n = await s.ReceiveAsync(into[got..], SocketFlags.None, _stop.Token).ConfigureAwait(false);
            if (n == 0) return false;
            got += n;
        }
        return true;
    }

    private static async Task WriteLoop(Client c)
    {
        try
        {
            await foreach (var m in c.Outgoing.Reader.ReadAllAsync().ConfigureAwait(false))
            {
                int sent = 0;
                while (sent < m.Length) sent += await c.Socket.SendAsync(m[sent..], SocketFlags.None).ConfigureAwait(false);
            }
        }
        catch (SocketException) { }
        catch (ObjectDisposedException) { }
    }

    private void Drop(Client c)
    {
        lock (_lock) if (!_clients.Remove(c)) return;
        c.Connection?.Dispose();
        c.Outgoing.Writer.TryComplete();
        try { c.Socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
        c.Socket.Dispose();
    }

    /// <summary>Stops accepting, closes every client (their watches and transactions end) and removes the
    /// socket file.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        _stop.Cancel();
        _listener.Dispose();
        await _accept.ConfigureAwait(false);
        Client[] all;
        lock (_lock) all = _clients.ToArray();
        foreach (var c in all) Drop(c);
        foreach (var c in all) if (c.Pump is { } p) await p.ConfigureAwait(false);
        _stop.Dispose();
        try { File.Delete(Path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    /// <summary>Blocking form of <see cref="DisposeAsync"/>.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
