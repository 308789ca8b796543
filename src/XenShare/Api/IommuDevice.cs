using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Devices;

namespace XenShare.Api;

/// <summary>
/// An open device with an MMU of its own on the emulated host (<c>/dev/xenshare/iommu&lt;N&gt;</c>, plugged in
/// with <c>EmulatedGuest.AddIommuDevice</c>) over any <see cref="IGuestProcess"/>: import any dma-buf (the DMA API
/// maps it for the device, which stitches the segments at one IOVA range) and have the device read it. The ABI is
/// <see cref="IommuDeviceIoctl"/>.
/// </summary>
/// <remarks>Thread-safe: every call is one system call on one fd.</remarks>
public sealed class IommuDevice : IDisposable
{
    private readonly GuestFdHandle _handle;

    private IommuDevice(IGuestProcess process, int fd)
    {
        Process = process;
        _handle = new GuestFdHandle(process, fd, nameof(IommuDevice));
    }

    /// <summary>Opens the device at <paramref name="path"/> in <paramref name="process"/>.</summary>
    /// <exception cref="XenShareException">open(2) failed (ENOENT: no such device).</exception>
    public static IommuDevice Open(IGuestProcess process, string path = IommuDeviceIoctl.DefaultPath)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentException.ThrowIfNullOrEmpty(path);
        int fd = ErrnoMapper.Check(process.Open(path, Posix.O_RDWR | Posix.O_CLOEXEC), "open " + path);
        return new IommuDevice(process, fd);
    }

    /// <summary>The process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The fd.</summary>
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public int Fd => _handle.Fd;

    /// <summary>The handle that owns the fd (closed by Dispose or, when forgotten, by the finalizer).</summary>
    public GuestFdHandle Handle => _handle;

    /// <summary>IMPORT: the dma-buf <paramref name="dmaBufFd"/> of the process, mapped for the device with
    /// <paramref name="direction"/> (0 bidirectional, 1 to the device, 2 from the device).</summary>
    /// <exception cref="XenShareException">EBADF, EINVAL (not a dma-buf), ENOMEM (the DMA API could not map it),
    /// or the exporter's errno.</exception>
    public IommuBuffer Import(int dmaBufFd, int direction = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(dmaBufFd);
        ArgumentOutOfRangeException.ThrowIfNegative(direction);
        var op = new xenshare_iommu_import { fd = (uint)dmaBufFd, direction = (uint)direction };
        ErrnoMapper.Check(_handle.Ioctl(IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_IMPORT, IoctlArg.Of(ref op)), "XENSHARE_IOMMU_IOCTL_IMPORT");
        return new IommuBuffer(this, op.handle, (int)op.segments, (long)op.size);
    }

    internal void Read(uint handle, long offset, Span<byte> into)
    {
        int header = System.Runtime.CompilerServices.Unsafe.SizeOf<xenshare_iommu_read>();
        using var arg = IoctlArg.WithArray<xenshare_iommu_read, byte>(
            new xenshare_iommu_read { handle = handle, length = (uint)into.Length, offset = (ulong)offset }, header, into.Length, stackalloc byte[256]);
        ErrnoMapper.Check(_handle.Ioctl(IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_READ, arg.Bytes), "XENSHARE_IOMMU_IOCTL_READ");
        arg.Bytes.Slice(header, into.Length).CopyTo(into);
    }

    internal void Release(uint handle)
    {
        var op = new xenshare_iommu_handle { handle = handle };
        // Nothing to do once the device is disposed: closing the device released every import.
        if (_handle.IoctlIfOpen(IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_RELEASE, IoctlArg.Of(ref op)) is int rc) ErrnoMapper.Check(rc, "XENSHARE_IOMMU_IOCTL_RELEASE");
    }

    /// <summary>Closes the device: every import it holds is released.</summary>
    public void Dispose()
    {
        _handle.Dispose();
    }
}
