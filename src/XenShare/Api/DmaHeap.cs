using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Api;

/// <summary>
/// An open dma-buf heap (<c>/dev/dma_heap/&lt;name&gt;</c>, <c>linux/dma-heap.h</c>) over any
/// <see cref="IGuestProcess"/>: allocates local dma-bufs (DMA_HEAP_IOCTL_ALLOC). <c>system</c> gives scattered
/// pages; a CMA heap (<c>reserved</c> on the emulated host) contiguous memory. Debian's stock kernels have no
/// dma-heap; the emulated host has both.
/// </summary>
/// <remarks>Thread-safe: every call is one ioctl on one fd.</remarks>
public sealed class DmaHeap : IDisposable
{
    /// <summary>The system heap's path.</summary>
    public const string SystemPath = "/dev/dma_heap/system";

    /// <summary>The emulated host's contiguous (CMA) heap's path.</summary>
    public const string ReservedPath = "/dev/dma_heap/reserved";

    private readonly GuestFdHandle _handle;

    private DmaHeap(IGuestProcess process, int fd, string path)
    {
        Process = process;
        _handle = new GuestFdHandle(process, fd, nameof(DmaHeap));
        Path = path;
    }

    /// <summary>Opens the heap at <paramref name="path"/> in <paramref name="process"/>.</summary>
    /// <exception cref="XenShareException">open(2) failed (ENOENT: no such heap).</exception>
    public static DmaHeap Open(IGuestProcess process, string path = SystemPath)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentException.ThrowIfNullOrEmpty(path);
        int fd = ErrnoMapper.Check(process.Open(path, Posix.O_RDONLY | Posix.O_CLOEXEC), "open " + path);
        return new DmaHeap(process, fd, path);
    }

    /// <summary>The process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The heap's path.</summary>
    public string Path { get; }

    /// <summary>DMA_HEAP_IOCTL_ALLOC: a new dma-buf of <paramref name="length"/> bytes (O_RDWR, close-on-exec).
    /// The returned handle owns its fd: disposing it (or, when forgotten, its finalizer) closes it.</summary>
    /// <exception cref="XenShareException">EINVAL (bad length), ENOMEM.</exception>
    /// <exception cref="ObjectDisposedException">The heap was disposed.</exception>
    public GuestFdHandle Allocate(long length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        var op = new dma_heap_allocation_data { len = (ulong)length, fd_flags = (uint)(Posix.O_RDWR | Posix.O_CLOEXEC) };
        ErrnoMapper.Check(_handle.Ioctl(DmaHeapIoctl.DMA_HEAP_IOCTL_ALLOC, IoctlArg.Of(ref op)), "DMA_HEAP_IOCTL_ALLOC");
        return new GuestFdHandle(Process, (int)op.fd, "dma-buf");
    }

    /// <summary>The handle that owns the heap's fd.</summary>
    public GuestFdHandle Handle => _handle;

    /// <summary>Closes the heap (buffers allocated from it live on).</summary>
    public void Dispose()
    {
        _handle.Dispose();
    }
}
