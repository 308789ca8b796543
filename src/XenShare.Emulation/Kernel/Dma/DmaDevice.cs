using XenShare.Abi;

namespace XenShare.Emulation.Kernel.Dma;

/// <summary>
/// A DMA-capable device of an emulated guest kernel (struct device with its dma ops): maps a buffer's pages
/// to bus addresses under a DMA mask as Linux on Xen does for the device's kind and domain
/// (<see cref="DmaTranslation"/>; spec DM02-DM05), and performs the device's own memory accesses through
/// those bus addresses.
/// </summary>
/// <remarks>
/// <para>Rules (docs/design.md cites the Linux and Xen functions): the exporter's pages become scatterlist
/// entries, one per run of frames consecutive in the exporting domain's numbering (DM02). In a direct-mapped
/// domain a <see cref="DmaTranslation.Direct"/> or <see cref="DmaTranslation.Iommu"/> device goes through
/// the Xen swiotlb: an entry whose machine frames are contiguous (and under the mask) is one segment at its
/// machine address (DM03); otherwise it is bounced through the kernel's <see cref="Swiotlb"/> when it is at
/// most 256 KiB, and the whole map fails (null: ENOMEM) when it is longer (DM04). In a domain that is not
/// direct-mapped a <see cref="DmaTranslation.Direct"/> device sees guest-physical addresses (its stage-2
/// shared with the SMMU): one segment per entry, no copy (DM05). An <see cref="DmaTranslation.Iommu"/>
/// device then maps the segments at one IOVA range; a <see cref="DmaTranslation.Physical"/> device sees
/// guest-physical addresses anywhere.</para>
/// <para>The device reaches only what is mapped for it: in a direct-mapped domain a machine address is
/// readable only while a mapping of this device covers it.</para>
/// <para>Lock: <c>_lock</c> guards the IOVA table and the machine pages mapped for the device (a leaf; the
/// swiotlb's copies and machine allocations happen outside it).</para>
/// </remarks>
public sealed class DmaDevice
{
    private const ulong IovaBase = 1UL << 32;
    private readonly object _lock = new();
    private readonly Dictionary<ulong, ulong> _iommu = new();          // iova page -> bus page of the inner mapping
    private readonly Dictionary<ulong, int> _machinePages = new();      // direct-mapped domain: machine page -> mappings
    private ulong _nextIova = IovaBase;
    private long _bounceBytes;

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

    /// <summary>How its bus addresses reach memory.</summary>
    public DmaTranslation Translation { get; }

    /// <summary>The highest bus address the device can reach.</summary>
    public ulong DmaMask { get; }

    /// <summary>Whether the device's bus addresses are machine addresses through the Xen swiotlb (a
    /// <see cref="DmaTranslation.Direct"/> or <see cref="DmaTranslation.Iommu"/> device of a direct-mapped
    /// domain).</summary>
    public bool UsesXenSwiotlb => Translation != DmaTranslation.Physical && Kernel.Domain.IsDirectMapped;

    /// <summary>IOMMU pages currently mapped (leak checks).</summary>
    public int IommuMappedPages { get { lock (_lock) return _iommu.Count; } }

    /// <summary>Bytes this device's mappings copied through swiotlb bounce buffers (map, sync, unmap).</summary>
    public long BounceBytes => Interlocked.Read(ref _bounceBytes);

    /// <summary>dma_map_sgtable for <paramref name="pages"/> with <paramref name="direction"/>. Returns null
    /// (the caller reports ENOMEM) when an entry cannot be mapped: beyond the mask, or (Xen swiotlb) not
    /// machine-contiguous and too long to bounce; nothing stays mapped then.</summary>
    public SgTable? Map(GuestFrame[] pages, DmaDirection direction = DmaDirection.Bidirectional)
    {
        ArgumentNullException.ThrowIfNull(pages);
        var entries = BuildEntries(pages);
        var segments = new List<SgSegment>(entries.Length);
        var bounces = new List<BounceSlot>();
        var machine = new List<(ulong First, int Pages)>();
        bool swiotlb = UsesXenSwiotlb;
        foreach (var entry in entries)
        {
            int bytes = entry.Pages * XenPage.Size;
            if (!swiotlb)
            {
                ulong addr = XenPage.AddressOf(entry.First.Value);
                if (Translation != DmaTranslation.Iommu && addr + (ulong)bytes - 1 > DmaMask) return Fail(bounces, counted: false);
                segments.Add(new SgSegment(addr, bytes, 0));
                continue;
            }
            if (TryMachineRun(entry, out ulong mfn0) && (Translation == DmaTranslation.Iommu || XenPage.AddressOf(mfn0) + (ulong)bytes - 1 <= DmaMask))
            {
                segments.Add(new SgSegment(XenPage.AddressOf(mfn0), bytes, 0));
                machine.Add((mfn0, entry.Pages));
                continue;
            }
            // DM04: xen_swiotlb_map_page bounces what the device cannot reach in place, within one IO TLB segment.
            var slot = Kernel.Swiotlb.TryAllocate(entry);
            if (slot is null || (Translation != DmaTranslation.Iommu && XenPage.AddressOf(slot.First.Value) + (ulong)bytes - 1 > DmaMask))
            {
                if (slot is not null) Kernel.Swiotlb.Free(slot);
                return Fail(bounces, counted: true);
            }
            bounces.Add(slot);
            if (direction is DmaDirection.ToDevice or DmaDirection.Bidirectional) CopyBounce(slot, toDevice: true);
            segments.Add(new SgSegment(XenPage.AddressOf(slot.First.Value), bytes, 0));
            machine.Add((slot.First.Value, slot.Pages));
        }

        lock (_lock)
        {
            foreach (var (first, count) in machine)
                for (int i = 0; i < count; i++)
                    _machinePages[first + (ulong)i] = _machinePages.GetValueOrDefault(first + (ulong)i) + 1;
            if (Translation == DmaTranslation.Iommu)
            {
                // The device's own MMU maps the segments it was given at one IOVA range.
                ulong total = 0;
                foreach (var s in segments) total += (ulong)s.Length;
                ulong iova = _nextIova;
                if (iova + total - 1 > DmaMask)
                {
                    foreach (var (first, count) in machine) Forget(first, count);
                    return Fail(bounces, counted: false);
                }
                _nextIova += total + (ulong)XenPage.Size;   // a guard page between mappings
                ulong page = XenPage.FrameOf(iova);
                foreach (var s in segments)
                    for (ulong p = 0; p < XenPage.FrameOf((ulong)s.Length); p++) _iommu[page++] = XenPage.FrameOf(s.DmaAddress) + p;
                segments = [new SgSegment(iova, (int)total, 0)];
            }
        }
        return new SgTable(pages, entries, [.. segments], this, direction, [.. bounces]) { MachineRuns = [.. machine] };
    }

    private SgTable? Fail(List<BounceSlot> bounces, bool counted)
    {
        foreach (var b in bounces) Kernel.Swiotlb.Free(b);
        if (counted) Kernel.Swiotlb.CountFailure();
        return null;
    }

    /// <summary>DM02: sg_alloc_table_from_pages merges pages consecutive in the exporter's frame numbering.</summary>
    private static SgEntry[] BuildEntries(GuestFrame[] pages)
    {
        var entries = new List<SgEntry>();
        for (int i = 0; i < pages.Length;)
        {
            int run = 1;
            while (i + run < pages.Length && pages[i + run].Value == pages[i].Value + (ulong)run) run++;
            entries.Add(new SgEntry(pages[i], run));
            i += run;
        }
        return [.. entries];
    }

    /// <summary>The machine frames behind an entry, when they are consecutive (range_straddles_page_boundary
    /// is false).</summary>
    private bool TryMachineRun(SgEntry entry, out ulong first)
    {
        first = 0;
        for (int i = 0; i < entry.Pages; i++)
        {
            if (!Kernel.TryResolve(new GuestFrame(entry.First.Value + (ulong)i), out var mfn)) return false;
            if (i == 0) first = mfn.Value;
            else if (mfn.Value != first + (ulong)i) return false;
        }
        return true;
    }

    private void CopyBounce(BounceSlot slot, bool toDevice)
    {
        Kernel.Swiotlb.Copy(slot, toDevice);
        Interlocked.Add(ref _bounceBytes, (long)slot.Pages * XenPage.Size);
    }

    /// <summary>Under _lock: drops the device's hold on machine pages.</summary>
    private void Forget(ulong first, int count)
    {
        for (int i = 0; i < count; i++)
        {
            ulong p = first + (ulong)i;
            int n = _machinePages.GetValueOrDefault(p) - 1;
            if (n <= 0) _machinePages.Remove(p);
            else _machinePages[p] = n;
        }
    }

    /// <summary>dma_unmap_sgtable: a bounced entry mapped from or both ways is copied back to the buffer
    /// first; the bounce buffers go back. Once per table.</summary>
    public void Unmap(SgTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        lock (_lock)
        {
            if (table.Unmapped) return;
            table.Unmapped = true;
            foreach (var (first, count) in table.MachineRuns) Forget(first, count);
            if (Translation == DmaTranslation.Iommu)
                foreach (var s in table.Segments)
                    for (ulong p = 0; p < XenPage.FrameOf((ulong)s.Length); p++) _iommu.Remove(XenPage.FrameOf(s.DmaAddress) + p);
        }
        foreach (var slot in table.Bounces)
        {
            if (table.Direction is DmaDirection.FromDevice or DmaDirection.Bidirectional) CopyBounce(slot, toDevice: false);
            Kernel.Swiotlb.Free(slot);
        }
    }

    /// <summary>dma_sync_sgtable_for_device: what the CPU wrote to the buffer since the map reaches the device
    /// (bounced entries are copied again; in place, nothing to do). Returns the bytes copied.</summary>
    public long SyncForDevice(SgTable table) => Sync(table, toDevice: true);

    /// <summary>dma_sync_sgtable_for_cpu: what the device wrote reaches the buffer (bounced entries are copied
    /// back). Returns the bytes copied.</summary>
    public long SyncForCpu(SgTable table) => Sync(table, toDevice: false);

    private long Sync(SgTable table, bool toDevice)
    {
        ArgumentNullException.ThrowIfNull(table);
        var wanted = toDevice ? DmaDirection.ToDevice : DmaDirection.FromDevice;
        if (table.Unmapped || (table.Direction != wanted && table.Direction != DmaDirection.Bidirectional)) return 0;
        long n = 0;
        foreach (var slot in table.Bounces)
        {
            CopyBounce(slot, toDevice);
            n += (long)slot.Pages * XenPage.Size;
        }
        return n;
    }

    /// <summary>The guest frame behind a bus address (dma_to_phys) of a device that sees guest-physical
    /// addresses, or false (also for a Xen swiotlb device, whose bus addresses are machine addresses).</summary>
    public bool TryTranslate(ulong dmaAddress, out GuestFrame gfn)
    {
        gfn = default;
        if (!TryBusPage(dmaAddress, out ulong page) || UsesXenSwiotlb) return false;
        gfn = new GuestFrame(page);
        return true;
    }

    /// <summary>The bus page behind an address after the device's own IOMMU (if any).</summary>
    private bool TryBusPage(ulong dmaAddress, out ulong page)
    {
        page = XenPage.FrameOf(dmaAddress);
        if (Translation == DmaTranslation.Iommu)
        {
            lock (_lock) return _iommu.TryGetValue(page, out page);
        }
        return dmaAddress <= DmaMask;
    }

    /// <summary>The machine frame a bus address reaches, or false when nothing is mapped there for the
    /// device.</summary>
    public bool TryResolveBus(ulong dmaAddress, out MachineFrame mfn)
    {
        mfn = default;
        if (!TryBusPage(dmaAddress, out ulong page)) return false;
        if (UsesXenSwiotlb)
        {
            lock (_lock)
            {
                if (!_machinePages.ContainsKey(page)) return false;
            }
            mfn = new MachineFrame(page);
            return true;
        }
        return Kernel.TryResolve(new GuestFrame(page), out mfn);
    }

    /// <summary>The device reads memory at a bus address (DMA from memory to the device).</summary>
    public int DmaRead(ulong dmaAddress, Span<byte> into)
    {
        int done = 0;
        while (done < into.Length)
        {
            ulong a = dmaAddress + (ulong)done;
            if (!TryResolveBus(a, out var mfn)) return -Errno.EFAULT;
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
            if (!TryResolveBus(a, out var mfn)) return -Errno.EFAULT;
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
        if (!TryResolveBus(dmaAddress, out var m0)) return default;
        int pages = (int)XenPage.PagesFor((ulong)XenPage.OffsetOf(dmaAddress) + (ulong)length);
        for (int i = 1; i < pages; i++)
        {
            if (!TryResolveBus(dmaAddress + XenPage.AddressOf((ulong)i), out var m) || m.Value != m0.Value + (ulong)i) return default;
        }
        return Kernel.Host.Memory.Span(XenPage.AddressOf(m0.Value) + (ulong)XenPage.OffsetOf(dmaAddress), length);
    }

    /// <summary>The device name.</summary>
    public override string ToString() => Name;
}
