using XenShare.Api;
using XenShare.Displif;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Cli.Demo;

/// <summary>
/// The backend allocator of <c>xenshare demo --be-alloc</c> (spec DM06): each buffer is contiguous DMA memory
/// from dom0's contiguous dma-heap (<c>/dev/dma_heap/reserved</c>, a CMA heap; machine-contiguous in a
/// direct-mapped dom0), so the scan-out engine, a device without an IOMMU, reads it in place as one segment.
/// The backend grants it to the frontend with IMP_TO_REFS. Emulator only (real Xen's dom0 has no such heap;
/// there the library's <see cref="GntAllocBufferAllocator"/> is the default).
/// </summary>
/// <remarks>Thread-safe: each allocation is independent.</remarks>
internal sealed class ContiguousHeapAllocator : IDisplifBufferAllocator
{
    private readonly GuestProcess _process;
    private readonly DomainId _self;

    /// <summary>Allocates in <paramref name="process"/> (the backend's).</summary>
    /// <param name="process">The backend's process.</param>
    /// <param name="self">The backend's domain (whose memory the buffers are).</param>
    public ContiguousHeapAllocator(GuestProcess process, DomainId self)
    {
        ArgumentNullException.ThrowIfNull(process);
        _process = process;
        _self = self;
    }

    /// <summary>Buffers allocated so far.</summary>
    public int Allocated => Volatile.Read(ref _allocated);

    private int _allocated;

    /// <inheritdoc/>
    public IDisplifLocalBuffer Allocate(int pageCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageCount);
        int fd = SystemHeap.Allocate(_process, pageCount, contiguous: true);
        if (fd < 0) throw new XenShareException(-fd, "contiguous dma-heap allocation");
        // Find the buffer behind the fd only to wait for its release later (dma_buf_get, then put at once).
        var buffer = DmaBufObject.Get(_process, fd, out int errno);
        if (buffer is null)
        {
            _process.Close(fd);
            throw new XenShareException(-errno, "dma_buf_get of a fresh heap buffer");
        }
        buffer.Put();
        Interlocked.Increment(ref _allocated);
        return new HeapBuffer(_process, _self, fd, pageCount, buffer.WhenReleased);
    }

    private sealed class HeapBuffer(GuestProcess process, DomainId self, int fd, int pageCount, Task released) : IDisplifLocalBuffer
    {
        private int _closed;

        public int DmaBufFd => fd;

        public int PageCount => pageCount;

        public DomainId SourceDomain => self;

        public IReadOnlyList<GrantRef> SourceRefs => [];

        public async Task<bool> CloseAndWaitReleasedAsync(TimeSpan timeout)
        {
            Close();
            try
            {
                await released.WaitAsync(timeout).ConfigureAwait(false);
                return true;
            }
            catch (TimeoutException)
            {
                return false;
            }
        }

        public void Dispose() => Close();

        private void Close()
        {
            if (Interlocked.Exchange(ref _closed, 1) == 0) process.Close(fd);
        }
    }
}
