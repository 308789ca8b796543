using XenShare.Api;
using XenShare.Displif;

namespace XenShare.Cli.Demo;

/// <summary>
/// The backend allocator of <c>xenshare demo --be-alloc</c> (spec DM06): each buffer is contiguous DMA memory
/// from dom0's contiguous dma-heap (<c>/dev/dma_heap/reserved</c>, a CMA heap; machine-contiguous in a
/// direct-mapped dom0), so the scan-out engine, a device without an IOMMU, reads it in place as one segment.
/// The backend grants it to the frontend with IMP_TO_REFS. It goes through the seam like any process would
/// (<see cref="DmaHeap"/>). Emulator only (real Xen's dom0 has no such heap; there the library's
/// <see cref="GntAllocBufferAllocator"/> is the default).
/// </summary>
/// <remarks>A heap buffer's release is not observable from user space (on Linux neither):
/// <c>CloseAndWaitReleasedAsync</c> closes the fd and reports the buffer released. Its memory stays safe all the
/// same: the backend's IMP_TO_REFS import holds the dma-buf, and IMP_RELEASE defers each grant end until the
/// frontend unmapped the page (EI07/D02).</remarks>
/// <remarks>Thread-safe: each allocation is independent.</remarks>
internal sealed class ContiguousHeapAllocator : IDisplifBufferAllocator, IDisposable
{
    private readonly IGuestProcess _process;
    private readonly DmaHeap _heap;
    private readonly DomainId _self;

    /// <summary>Allocates in <paramref name="process"/> (the backend's).</summary>
    /// <param name="process">The backend's process.</param>
    /// <param name="self">The backend's domain (whose memory the buffers are).</param>
    public ContiguousHeapAllocator(IGuestProcess process, DomainId self)
    {
        ArgumentNullException.ThrowIfNull(process);
        _process = process;
        _self = self;
        _heap = DmaHeap.Open(process, DmaHeap.ReservedPath);
    }

    /// <summary>Closes the heap (buffers allocated from it live on until closed).</summary>
    public void Dispose() => _heap.Dispose();

    /// <summary>Buffers allocated so far.</summary>
    public int Allocated => Volatile.Read(ref _allocated);

    private int _allocated;

    /// <inheritdoc/>
    public IDisplifLocalBuffer Allocate(int pageCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageCount);
        GuestFdHandle fd = _heap.Allocate((long)pageCount * Abi.XenPage.Size);
        Interlocked.Increment(ref _allocated);
        return new HeapBuffer(_self, fd, pageCount);
    }

    private sealed class HeapBuffer(DomainId self, GuestFdHandle fd, int pageCount) : IDisplifLocalBuffer
    {
        public int DmaBufFd => fd.Fd;

        public int PageCount => pageCount;

        public DomainId SourceDomain => self;

        public IReadOnlyList<GrantRef> SourceRefs => [];

        public Task<bool> CloseAndWaitReleasedAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
        {
            Close();   // see the class remarks: the release itself is the kernel's business
            return Task.FromResult(true);
        }

        public void Dispose() => Close();

        private void Close() => fd.Dispose();
    }
}
