using XenShare.Abi;
using System.Net.Sockets;

namespace XenShare.Xenstore;

/// <summary>The xenstored Unix domain socket (dom0 and driver domains).</summary>
internal sealed class SocketTransport : IXenstoreTransport
{
    private readonly Socket _socket;
    private int _disposed;

    private SocketTransport(Socket socket) => _socket = socket;

    /// <summary>Connects to the socket at <paramref name="path"/>.</summary>
    public static SocketTransport Connect(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(path));
            return new SocketTransport(socket);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public bool ReceiveBlocks => false;

    public bool OneRequestInFlight => false;

    public int MaxRequestPayload => XsWire.XENSTORE_PAYLOAD_MAX;

    public void Send(ReadOnlySpan<byte> message)
    {
        try
        {
            // A stream socket may accept part of the buffer; loop so the whole message goes out before
            // the caller releases the send lock (XS01: messages never interleave).
            while (!message.IsEmpty)
            {
                int n = _socket.Send(message, SocketFlags.None);
                if (n <= 0) throw new IOException("xenstore socket accepted no bytes");
                message = message[n..];
            }
        }
        catch (SocketException e)
        {
            throw new IOException("xenstore socket send failed: " + e.Message, e);
        }
    }

    public async ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        try
        {
            return await _socket.ReceiveAsync(buffer, SocketFlags.None, cancellationToken).ConfigureAwait(false);
        }
        catch (SocketException e)
        {
            throw new IOException("xenstore socket receive failed: " + e.Message, e);
        }
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        try
        {
            // Shutdown first so a receive pending on another thread completes at once.
            _socket.Shutdown(SocketShutdown.Both);
        }
        catch (SocketException)
        {
            // Already disconnected: nothing left to shut down.
        }
        _socket.Dispose();
    }
}
