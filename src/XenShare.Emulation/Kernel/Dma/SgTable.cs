namespace XenShare.Emulation.Kernel.Dma;

/// <summary>
/// A scatter-gather table (struct sg_table) as mapped for one device: the guest pages of the buffer
/// and the DMA segments, where pages contiguous in the device's address space coalesce into one
/// segment (DB05).
/// </summary>
public sealed class SgTable
{
    internal SgTable(GuestFrame[] pages, SgSegment[] segments, DmaDevice device)
    {
        Pages = pages;
        Segments = segments;
        Device = device;
    }

    /// <summary>The buffer's pages in order.</summary>
    public IReadOnlyList<GuestFrame> Pages { get; }

    /// <summary>The DMA segments (dma_address, dma_length).</summary>
    public IReadOnlyList<SgSegment> Segments { get; }

    /// <summary>The device the table is mapped for.</summary>
    public DmaDevice Device { get; }

    /// <summary>Total bytes.</summary>
    public long TotalLength
    {
        get
        {
            long n = 0;
            foreach (var s in Segments) n += s.Length;
            return n;
        }
    }
}
