using XenShare.Abi;
using XenShare.Api;

namespace XenShare.Xenstore;

/// <summary>The guest kernel's <c>/dev/xen/xenbus</c> device reached through the <see cref="IGuestProcess"/>
/// seam (XS07): a whole request goes out with one write(2); read(2) blocks until the kernel has reply or
/// watch-event bytes and may return part of a message or several.</summary>
internal sealed class XenbusTransport : IXenstoreTransport
{
    /// <summary>The device path.</summary>
    public const string DevicePath = "/dev/xen/xenbus";

    private readonly IGuestProcess _process;
    private readonly GuestFdHandle _handle;

    private XenbusTransport(IGuestProcess process, int fd)
    {
        _process = process;
        _handle = new GuestFdHandle(process, fd, nameof(XenbusTransport));
    }

    /// <summary>Opens the device in <paramref name="process"/>; a failing open throws
    /// <see cref="XenShareException"/> with the errno.</summary>
    public static XenbusTransport Open(IGuestProcess process)
    {
        int fd = ErrnoMapper.Check(process.Open(DevicePath, Posix.O_RDWR | Posix.O_CLOEXEC), "open " + DevicePath);
        return new XenbusTransport(process, fd);
    }

    public bool ReceiveBlocks => true;

    public bool OneRequestInFlight => true;

    public int MaxRequestPayload => XsWire.XENSTORE_PAYLOAD_MAX - XsWire.HeaderSize;

    // No lease around read(2): Dispose must close the fd under a blocked read to stop the reader (XS07).
    private int Fd => _handle.Fd;

    public void Send(ReadOnlySpan<byte> message)
    {
        long n = _process.Write(Fd, message);
        if (n < 0) throw ErrnoMapper.ToException(n, "write(" + DevicePath + ")");   // an IOException with the errno
        // XS07: the kernel parses a request from one write; a short write would leave the stream torn.
        if (n != message.Length)
            throw new IOException($"write({DevicePath}) took {n} of {message.Length} bytes");
    }

    public ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken)
    {
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            long n = _process.Read(Fd, buffer.Span);
            if (n == -Errno.EINTR) continue;
            if (n < 0)
            {
                // A read failing because Dispose closed the fd under it is the end, not a fault.
                ObjectDisposedException.ThrowIf(_handle.IsDisposed, this);
                throw ErrnoMapper.ToException(n, "read(" + DevicePath + ")");
            }
            return ValueTask.FromResult((int)n);
        }
    }

    public void Dispose()
    {
        // The seam's close ends a read blocked on the fd (XS07), which stops the client's reader thread.
        _handle.Dispose();
    }
}
