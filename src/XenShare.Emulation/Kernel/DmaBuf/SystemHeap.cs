using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Kernel.Dma;

namespace XenShare.Emulation.Kernel.DmaBuf;

/// <summary>
/// A local dma-buf exporter backed by the kernel's RAM pages (Linux's system and CMA dma-heaps): the
/// <c>/dev/dma_heap/system</c> device (DMA_HEAP_IOCTL_ALLOC) and a kernel API. Buffers map per attachment
/// on every map call, support mmap and CPU-access hooks, and free their pages at release.
/// </summary>
public static class SystemHeap
{
    /// <summary>The device path of the scattered heap.</summary>
    public const string Path = "/dev/dma_heap/system";

    /// <summary>The device path of the contiguous heap (CMA).</summary>
    public const string ContiguousPath = "/dev/dma_heap/reserved";

    internal static void Register(GuestKernel kernel)
    {
        kernel.RegisterDevice(Path, (_, _) => new HeapFile(kernel, contiguous: false));
        kernel.RegisterDevice(ContiguousPath, (_, _) => new HeapFile(kernel, contiguous: true));
    }

    /// <summary>Allocates a buffer of <paramref name="pages"/> zeroed pages and installs it as an fd in
    /// <paramref name="process"/>. Returns the fd or -errno.</summary>
    public static int Allocate(GuestProcess process, int pages, bool contiguous)
    {
        ArgumentNullException.ThrowIfNull(process);
        var buf = Create(process.Kernel, pages, contiguous, out int errno);
        if (buf is null) return errno;
        int fd = buf.InstallFd(process);
        if (fd < 0) buf.Put();
        return fd;
    }

    /// <summary>Creates a buffer holding one in-kernel reference (or null with -errno).</summary>
    public static DmaBufObject? Create(GuestKernel kernel, int pages, bool contiguous, out int errno)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        if (pages <= 0) { errno = -Errno.EINVAL; return null; }
        var frames = new GuestFrame[pages];
        if (contiguous)
        {
            if (!kernel.TryAllocContiguous(pages, block: false, out var first)) { errno = -Errno.ENOMEM; return null; }
            for (int i = 0; i < pages; i++) frames[i] = new GuestFrame(first.Value + (ulong)i);
            foreach (var g in frames) kernel.FrameSpan(g).Clear();
        }
        else if (!kernel.TryAllocPages(frames, zero: true)) { errno = -Errno.ENOMEM; return null; }
        var ops = new DmaBufOps
        {
            Attach = _ => 0,
            Map = (DmaBufAttachment a, DmaDirection dir, out int e) =>
            {
                e = 0;
                if (dir == DmaDirection.None) { e = -Errno.EINVAL; return null; }
                var t = a.Device.Map(frames, dir);
                if (t is null) e = -Errno.ENOMEM;
                return t;
            },
            Unmap = (a, t, _) => a.Device.Unmap(t),
            Release = _ => { foreach (var g in frames) kernel.FreePage(g); },
            BeginCpuAccess = (_, _) => 0,
            EndCpuAccess = (_, _) => 0,
            MmapPages = (_, first, into) =>
            {
                if (first + into.Length > frames.Length) return -Errno.EINVAL;
                Array.Copy(frames, first, into, 0, into.Length);
                return 0;
            },
        };
        return DmaBufObject.Export(kernel, ops, (long)pages * XenPage.Size, frames, out errno);
    }

    private sealed class HeapFile(GuestKernel kernel, bool contiguous) : KernelFile
    {
        public override int Ioctl(GuestProcess caller, uint request, Span<byte> arg)
        {
            if (request != DmaHeapIoctl.DMA_HEAP_IOCTL_ALLOC) return -Errno.ENOTTY;
            if (arg.Length < 24) return -Errno.EFAULT;
            ref var op = ref MemoryMarshal.AsRef<dma_heap_allocation_data>(arg);
            if (op.fd != 0) return -Errno.EINVAL;
            if ((op.fd_flags & ~(uint)(Posix.O_CLOEXEC | 3)) != 0) return -Errno.EINVAL;
            if (op.heap_flags != 0) return -Errno.EINVAL;
            if (op.len == 0 || op.len > int.MaxValue) return -Errno.EINVAL;
            var buf = Create(kernel, (int)XenPage.PagesFor(op.len), contiguous, out int errno);
            if (buf is null) return errno;
            int fd = buf.InstallFd(caller, (op.fd_flags & Posix.O_CLOEXEC) != 0);
            if (fd < 0) { buf.Put(); return fd; }
            op.fd = (uint)fd;
            return 0;
        }

        protected override void Release() { }
    }
}
