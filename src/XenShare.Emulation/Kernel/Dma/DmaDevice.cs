using XenShare.Abi;

namespace XenShare.Emulation.Kernel.Dma;

/// <summary>
/// A DMA-capable device of an emulated guest kernel (struct device with its dma ops): maps page lists to
/// bus addresses under a DMA mask, either directly or through an IOMMU, and performs the device's own
/// memory accesses through those bus addresses.
/// </summary>
/// <remarks>Lock: <c>_lock</c> guards the IOVA allocator and table (a leaf).</remarks>
public sealed class DmaDevice
{
    private const ulong IovaBase = 1UL << 32;
    private readonly object _lock = new();
    private readonly Dictionary<ulong, GuestFrame> _iommu = new();   // iova page -> gfn
    private ulong _nextIova = IovaBase;

    /// <summary>Creates a device of a kernel.</summary>
    public DmaDevice(GuestKernel kernel, string name, DmaTranslation translation = DmaTranslation.Direct, ulong dmaMask = ulong.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Kernel = kernel;
        Name = name;
        Translation = translation;
        DmaMask = dmaMask;
    }

    /// <summary>The kernel the device belongs to.</summary>
    public GuestKernel Kernel { get; }

    /// <summary>Device name.</summary>
    public string Name { get; }

    /// <summary>Direct or IOMMU.</summary>
    public DmaTranslation Translation { get; }

    /// <summary>The highest bus address the device can reach.</summary>
    public ulong DmaMask { get; }

    /// <summary>IOMMU pages currently mapped (leak checks).</summary>
    public int IommuMappedPages { get { lock (_lock) return _iommu.Count; } }

    /// <summary>dma_map_sgtable: maps pages for this device. Returns null (the caller reports ENOMEM)
    /// when an address is beyond the mask.</summary>
    public SgTable? Map(GuestFrame[] pages)
    {
        ArgumentNullException.ThrowIfNull(pages);
        if (Translation == DmaTranslation.Iommu)
        {
            ulong iova;
            lock (_lock)
            {
                iova = _nextIova;
                if (iova + XenPage.AddressOf((ulong)pages.Length) - 1 > DmaMask) return null;
                _nextIova += XenPage.AddressOf((ulong)pages.Length + 1);   // a guard page between mappings
                for (int i = 0; i < pages.Length; i++) _iommu[XenPage.FrameOf(iova) + (ulong)i] = pages[i];
            }
            return new SgTable(pages, [new SgSegment(iova, pages.Length * XenPage.Size, 0)], this);
        }
        var segs = new List<SgSegment>();
        for (int i = 0; i < pages.Length;)
        {
            int run = 1;
            while (i + run < pages.Length && pages[i + run].Value == pages[i].Value + (ulong)run) run++;
            ulong addr = XenPage.AddressOf(pages[i].Value);
            if (addr + XenPage.AddressOf((ulong)run) - 1 > DmaMask) return null;
            segs.Add(new SgSegment(addr, run * XenPage.Size, 0));
            i += run;
        }
        return new SgTable(pages, segs.ToArray(), this);
    }

    /// <summary>dma_unmap_sgtable.</summary>
    public void Unmap(SgTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        if (Translation != DmaTranslation.Iommu) return;
        lock (_lock)
            foreach (var s in table.Segments)
                for (ulong p = 0; p < XenPage.FrameOf((ulong)s.Length); p++) _iommu.Remove(XenPage.FrameOf(s.DmaAddress) + p);
    }

    /// <summary>The guest frame behind a bus address (dma_to_phys), or false.</summary>
    public bool TryTranslate(ulong dmaAddress, out GuestFrame gfn)
    {
        if (Translation == DmaTranslation.Direct)
        {
            gfn = new GuestFrame(XenPage.FrameOf(dmaAddress));
            return dmaAddress <= DmaMask;
        }
        lock (_lock) return _iommu.TryGetValue(XenPage.FrameOf(dmaAddress), out gfn);
    }

    /// <summary>The device reads memory at a bus address (DMA from memory to the device).</summary>
    public int DmaRead(ulong dmaAddress, Span<byte> into)
    {
        int done = 0;
        while (done < into.Length)
        {
            ulong a = dmaAddress + (ulong)done;
            if (!TryTranslate(a, out var gfn) || !Kernel.TryResolve(gfn, out var mfn)) return -Errno.EFAULT;
            int off = XenPage.OffsetOf(a), n = Math.Min(XenPage.Size - off, into.Length - done);
            Kernel.Host.Memory.FrameSpan(mfn).Slice(off, n).CopyTo(into.Slice(done, n));
            done += n;
        }
        return 0;
    }

    /// <summary>The device writes memory at a bus address.</summary>
    public int DmaWrite(ulong dmaAddress, ReadOnlySpan<byte> from)
    {
        int done = 0;
        while (done < from.Length)
        {
            ulong a = dmaAddress + (ulong)done;
            if (!TryTranslate(a, out var gfn) || !Kernel.TryResolve(gfn, out var mfn)) return -Errno.EFAULT;
            int off = XenPage.OffsetOf(a), n = Math.Min(XenPage.Size - off, from.Length - done);
            from.Slice(done, n).CopyTo(Kernel.Host.Memory.FrameSpan(mfn).Slice(off, n));
            done += n;
        }
        return 0;
    }

    /// <summary>A span over a contiguous run of machine memory behind a bus-address range, when the range
    /// is backed by machine-contiguous frames (a scan-out engine reading a frame without a copy); null
    /// otherwise.</summary>
    public unsafe Span<byte> TryDirectSpan(ulong dmaAddress, int length)
    {
        if (!TryTranslate(dmaAddress, out var g0) || !Kernel.TryResolve(g0, out var m0)) return default;
        int pages = (int)XenPage.PagesFor((ulong)XenPage.OffsetOf(dmaAddress) + (ulong)length);
        for (int i = 1; i < pages; i++)
        {
            if (!TryTranslate(dmaAddress + XenPage.AddressOf((ulong)i), out var g) || !Kernel.TryResolve(g, out var m) || m.Value != m0.Value + (ulong)i) return default;
        }
        return Kernel.Host.Memory.Span(XenPage.AddressOf(m0.Value) + (ulong)XenPage.OffsetOf(dmaAddress), length);
    }

    /// <summary>The device name.</summary>
    public override string ToString() => Name;
}
