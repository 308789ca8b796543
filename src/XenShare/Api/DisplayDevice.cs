using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Devices;

namespace XenShare.Api;

/// <summary>
/// An open display controller of the emulated host (<c>/dev/xenshare/display&lt;N&gt;</c>, plugged in with
/// <c>EmulatedGuest.AddDisplay</c>) over any <see cref="IGuestProcess"/>: import a dma-buf as a framebuffer
/// (the display maps it for DMA as Linux on Xen would: in place, bounced, or refused with ENOMEM), flip, sync a
/// bounced framebuffer, read the scanned-out frame back, read the counters. The devices' ABI is
/// <see cref="DisplayDeviceIoctl"/>.
/// </summary>
/// <remarks>Thread-safe: every call is one system call on one fd.</remarks>
public sealed class DisplayDevice : IDisposable
{
    private readonly GuestFdHandle _handle;

    private DisplayDevice(IGuestProcess process, int fd, string path)
    {
        Process = process;
        _handle = new GuestFdHandle(process, fd, nameof(DisplayDevice));
        Path = path;
    }

    /// <summary>Opens the display at <paramref name="path"/> in <paramref name="process"/>.</summary>
    /// <exception cref="XenShareException">open(2) failed (ENOENT: no such display).</exception>
    public static DisplayDevice Open(IGuestProcess process, string path = DisplayDeviceIoctl.DefaultPath)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentException.ThrowIfNullOrEmpty(path);
        int fd = ErrnoMapper.Check(process.Open(path, Posix.O_RDWR | Posix.O_CLOEXEC), "open " + path);
        return new DisplayDevice(process, fd, path);
    }

    /// <summary>The process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The device path.</summary>
    public string Path { get; }

    /// <summary>The fd.</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public int Fd => _handle.Fd;

    /// <summary>The handle that owns the fd (closed by Dispose or, when forgotten, by the finalizer).</summary>
    public GuestFdHandle Handle => _handle;

    /// <summary>FB_IMPORT: imports the dma-buf <paramref name="dmaBufFd"/> of the process as a framebuffer of
    /// <paramref name="width"/> x <paramref name="height"/> 32-bit pixels with <paramref name="stride"/> bytes per
    /// row. The display takes one DMA segment.</summary>
    /// <exception cref="XenShareException">EBADF (not open), EINVAL (not a dma-buf, more than one segment, too
    /// small, bad geometry or format), ENOMEM (the display could not map it: in a direct-mapped domain a
    /// scattered buffer larger than the swiotlb can bounce), or the exporter's errno.</exception>
    public ScanoutBuffer Import(int dmaBufFd, int width, int height, int stride, uint fourCC = DisplayFormats.XRGB8888)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dmaBufFd);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(stride);
        var op = new xenshare_display_fb_import { fd = (uint)dmaBufFd, width = (uint)width, height = (uint)height, stride = (uint)stride, fourcc = fourCC };
        ErrnoMapper.Check(_handle.Ioctl(DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_IMPORT, IoctlArg.Of(ref op)), "XENSHARE_DISPLAY_IOCTL_FB_IMPORT");
        return new ScanoutBuffer(this, op.fb_id, width, height, stride, (int)op.segments, (long)op.bounced_bytes);
    }

    /// <summary>FLIP: latches <paramref name="buffer"/> as the front buffer.</summary>
    /// <exception cref="XenShareException">ENOENT: released.</exception>
    public void Flip(ScanoutBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        var op = new xenshare_display_fb { fb_id = buffer.Id };
        ErrnoMapper.Check(_handle.Ioctl(DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FLIP, IoctlArg.Of(ref op)), "XENSHARE_DISPLAY_IOCTL_FLIP");
    }

    /// <summary>FB_SYNC: what the CPU wrote into a bounced buffer since it was imported (or last synced) reaches the
    /// display; returns the bytes copied (0 for a buffer the display reads in place).</summary>
    /// <exception cref="XenShareException">ENOENT: released.</exception>
    public long Sync(ScanoutBuffer buffer)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        var op = new xenshare_display_fb_sync { fb_id = buffer.Id };
        ErrnoMapper.Check(_handle.Ioctl(DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_SYNC, IoctlArg.Of(ref op)), "XENSHARE_DISPLAY_IOCTL_FB_SYNC");
        return (long)op.bytes_copied;
    }

    /// <summary>read(2): scans the front buffer out into <paramref name="frame"/> (rows of width x 4 bytes, packed)
    /// and returns the bytes written.</summary>
    /// <exception cref="XenShareException">ENODATA (nothing flipped, or the front buffer was released), EINVAL
    /// (<paramref name="frame"/> is smaller than a frame).</exception>
    public int ReadFrame(Span<byte> frame)
    {
        using var fd = _handle.Lease();
        return (int)ErrnoMapper.Check(Process.Read(fd.Fd, frame), "read " + Path);
    }

    /// <summary>STATS: the display's counters.</summary>
    public DisplayStats Stats()
    {
        var op = default(xenshare_display_stats);
        ErrnoMapper.Check(_handle.Ioctl(DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_STATS, IoctlArg.Of(ref op)), "XENSHARE_DISPLAY_IOCTL_STATS");
        return new DisplayStats(op);
    }

    internal void Release(uint id)
    {
        var op = new xenshare_display_fb { fb_id = id };
        // Nothing to do once the device is disposed: closing the device released every framebuffer.
        if (_handle.IoctlIfOpen(DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_RELEASE, IoctlArg.Of(ref op)) is int rc) ErrnoMapper.Check(rc, "XENSHARE_DISPLAY_IOCTL_FB_RELEASE");
    }

    /// <summary>Closes the device: every framebuffer it imported is released.</summary>
    public void Dispose()
    {
        _handle.Dispose();
    }
}
