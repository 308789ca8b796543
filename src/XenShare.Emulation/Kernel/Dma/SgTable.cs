namespace XenShare.Emulation.Kernel.Dma;

/// <summary>One scatterlist entry as the exporter built it (the CPU side of an sg table): a run of pages
/// consecutive in the exporting domain's own frame numbering (DM02).</summary>
/// <param name="First">The first guest frame.</param>
/// <param name="Pages">How many consecutive guest frames.</param>
public readonly record struct SgEntry(GuestFrame First, int Pages);

/// <summary>
/// A scatter-gather table (struct sg_table) as mapped for one device: the buffer's pages, the entries the
/// exporter built from them (pages consecutive in the exporter's frame numbering merge into one entry, DM02)
/// and the DMA segments the device got for them (DB05, DM03-DM05), some of which may be swiotlb bounce
/// buffers (DM04).
/// </summary>
public sealed class SgTable
{
    internal SgTable(GuestFrame[] pages, SgEntry[] entries, SgSegment[] segments, DmaDevice device, DmaDirection direction, BounceSlot[] bounces)
    {
        Pages = pages;
        Entries = entries;
        Segments = segments;
        Device = device;
        Direction = direction;
        Bounces = bounces;
        long bytes = 0;
        foreach (var b in bounces) bytes += (long)b.Pages * Abi.XenPage.Size;
        BouncedBytes = bytes;
    }

    /// <summary>The buffer's pages in order.</summary>
    public IReadOnlyList<GuestFrame> Pages { get; }

    /// <summary>The scatterlist entries (CPU side), in order.</summary>
    public IReadOnlyList<SgEntry> Entries { get; }

    /// <summary>The DMA segments (dma_address, dma_length), as the device sees them.</summary>
    public IReadOnlyList<SgSegment> Segments { get; }

    /// <summary>The device the table is mapped for.</summary>
    public DmaDevice Device { get; }

    /// <summary>The direction it was mapped with.</summary>
    public DmaDirection Direction { get; }

    /// <summary>Bytes of the buffer that the device reaches through swiotlb bounce buffers (0: the device
    /// reads and writes the buffer's own memory).</summary>
    public long BouncedBytes { get; }

    /// <summary>True when the device reaches every byte in place (no bounce buffer).</summary>
    public bool InPlace => BouncedBytes == 0;

    internal BounceSlot[] Bounces { get; }

    /// <summary>Machine runs held for the device (Xen swiotlb mappings: in place and bounce buffers).</summary>
    internal (ulong First, int Pages)[] MachineRuns { get; init; } = [];

    internal bool Unmapped { get; set; }

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

/// <summary>A swiotlb bounce buffer standing in for one scatterlist entry: the entry's pages and the
/// machine-contiguous frames the device reads and writes instead.</summary>
internal sealed record BounceSlot(SgEntry Entry, MachineFrame First, int Pages);
