using System.Buffers.Binary;
using System.Net.Sockets;

namespace XenShare.Tests.Xenstore;

/// <summary>Serves a <see cref="FakeXenstored"/> on a real Unix domain socket in a temporary directory.</summary>
internal sealed class FakeXenstoredSocketServer : IDisposable
{
    private readonly FakeXenstored _daemon;
    private readonly Socket _listener;
    private readonly string _directory;
    private readonly List<Socket> _accepted = [];
    private readonly CancellationTokenSource _stop = new();

    public FakeXenstoredSocketServer(FakeXenstored daemon)
    {
        _daemon = daemon;
        _directory = Path.Combine(Path.GetTempPath(), "xs-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(_directory);
        SocketPath = Path.Combine(_directory, "socket");
        _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _listener.Bind(new UnixDomainSocketEndPoint(SocketPath));
        _listener.Listen(16);
        _ = AcceptLoopAsync();
    }

    public string SocketPath { get; }

    private async Task AcceptLoopAsync()
    {
        try
        {
            while (true)
            {
                var socket = await _listener.AcceptAsync(_stop.Token);
                lock (_accepted) _accepted.Add(socket);
                _ = ServeAsync(socket);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        var sendLock = new Lock();
        var connection = _daemon.Attach(bytes =>
        {
            lock (sendLock)
            {
                try { socket.Send(bytes); }
                catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            }
        });
        var buffer = new byte[1 << 16];
        int filled = 0;
        try
        {
            while (true)
            {
                int n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, _stop.Token);
                if (n == 0) break;
                filled += n;
                int consumed = 0;
                while (filled - consumed >= 16)
                {
                    int len = (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(consumed + 12));
                    if (filled - consumed < 16 + len) break;
                    _daemon.Handle(connection, buffer.AsSpan(consumed, 16 + len));
                    consumed += 16 + len;
                }
                buffer.AsSpan(consumed, filled - consumed).CopyTo(buffer);
                filled -= consumed;
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
        finally
        {
            _daemon.Detach(connection);
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Dispose();
        lock (_accepted)
            foreach (var socket in _accepted) socket.Dispose();
        _stop.Dispose();
        try { Directory.Delete(_directory, recursive: true); }
        catch (IOException) { }
    }
}
