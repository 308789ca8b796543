namespace XenShare.Displif;

/// <summary>Allocates the local buffers of a backend-allocated display buffer (be-alloc, spec DP03). The
/// default is <see cref="GntAllocBufferAllocator"/>, which works on the emulator and on real Xen, where
/// dom0 has no dma-heap.</summary>
public interface IDisplifBufferAllocator
{
    /// <summary>Allocates <paramref name="pageCount"/> zeroed pages as a local dma-buf.</summary>
    /// <param name="pageCount">The pages (1 or more).</param>
    /// <exception cref="Api.XenShareException">The allocation failed (its errno answers the request).</exception>
    IDisplifLocalBuffer Allocate(int pageCount);
}
