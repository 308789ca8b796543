using XenShare.Abi;
using XenShare.Api;
using XenShare.Emulation;
using XenShare.Emulation.Devices;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

/// <summary>
/// DM02-DM06: DMA as Linux on Xen does it (Arm, Linux 6.1, Xen 4.17): scatterlists as gntdev-dmabuf builds
/// them, machine addresses and the Xen swiotlb in a direct-mapped dom0, a driver domain whose display sees
/// guest-physical addresses, and backend-allocated buffers. Each test builds its own host, with deliberately
/// fragmented machine placement (DM01) where placement matters, and ends with the leak and isolation checks.
/// </summary>
public sealed class DmaRealismTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(1);

    /// <summary>A host with dom0, a frontend domU and (optionally) a driver domain, and one process each.</summary>
    private sealed class Rig : IDisposable
    {
        public Rig(MachinePlacement placement, bool driverDomain = false)
        {
            Host = new EmulatedHost(placement: placement);
            Front = Host.CreateGuest();
            P0 = Host.Dom0.StartProcess();
            PF = Front.StartProcess();
            if (driverDomain)
            {
                Driver = Host.CreateGuest(new DomainConfig { RamPages = 8192 });
                PD = Driver.StartProcess();
            }
        }

        public EmulatedHost Host { get; }
        public EmulatedGuest Front { get; }
        public EmulatedGuest? Driver { get; }
        public GuestProcess P0 { get; }
        public GuestProcess PF { get; }
        public GuestProcess? PD { get; }

        /// <summary>The machine frame behind a frontend page granted by <paramref name="gref"/>.</summary>
        public MachineFrame MachineFrameOf(GrantRef gref)
        {
            var entry = Front.Domain.GrantTable.ReadEntry(gref);
            Assert.True(Front.Domain.P2M.TryGet(new GuestFrame(entry.Frame), out var mfn, out _));
            return mfn;
        }

        public void Dispose()
        {
            PD?.Dispose();
            PF.Dispose();
            P0.Dispose();
            Assert.Empty(Host.CheckLeaks());
            Assert.Empty(Host.CheckIsolation());
            Host.Dispose();
        }
    }

    private static void Fill(Span<byte> data, byte seed)
    {
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(seed + (i * 31 >> 4));
    }

    private static byte[] ScanOut(ScanoutEngine engine, ScanoutFramebuffer fb, out bool zeroCopy)
    {
        var seen = new byte[fb.Height * fb.Width * 4];
        zeroCopy = engine.ScanOut((y, row) => row.CopyTo(seen.AsSpan(y * fb.Width * 4)));
        return seen;
    }

    private static SgTable MapFor(DmaBufObject buffer, DmaDevice device, out DmaBufAttachment attachment)
    {
        attachment = buffer.Attach(device, out int e) ?? throw new XenShareException(-e, "attach");
        return buffer.MapAttachment(attachment, DmaDirection.ToDevice, out e) ?? throw new XenShareException(-e, "map");
    }

    [Fact]
    public void DM02_WcExportIsOneEntry_FlagsZeroIsPageEntriesMergedWhereConsecutive()
    {
        using var rig = new Rig(MachinePlacement.Fragmented);
        using var sharer = GrantSharer.Open(rig.PF);
        using var pages = sharer.Share(DomainId.Dom0, 8);
        using var gnt = GrantDevice.Open(rig.P0);
        var device = new DmaDevice(rig.Host.Dom0.Kernel, "probe", DmaTranslation.Physical);

        using (var wc = gnt.ExportDmaBuf(rig.Front.Id, [.. pages.Refs], DmaBufBacking.WriteCombine))
        {
            var buffer = DmaBufObject.Get(rig.P0, wc.Fd, out _)!;
            var table = MapFor(buffer, device, out var att);
            // One entry for the whole buffer, whatever machine frames the grants name (DM02).
            Assert.Single(table.Entries);
            Assert.Equal(8, table.Entries[0].Pages);
            var machine = pages.Refs.Select(rig.MachineFrameOf).ToArray();
            Assert.Contains(Enumerable.Range(1, 7), i => machine[i].Value != machine[i - 1].Value + 1);   // scattered behind it
            buffer.Detach(att);
            buffer.Put();
        }

        // Flags 0: ballooned pages, one entry per run of consecutive frames; a hole splits the run.
        using var hole = gnt.Map(rig.Front.Id, [pages.Refs[0]]);
        using var keep = gnt.Map(rig.Front.Id, [pages.Refs[1]]);
        hole.Dispose();
        using (var plain = gnt.ExportDmaBuf(rig.Front.Id, [.. pages.Refs.Skip(2).Take(3)]))
        {
            var buffer = DmaBufObject.Get(rig.P0, plain.Fd, out _)!;
            var table = MapFor(buffer, device, out var att);
            Assert.Equal(3, table.Pages.Count);
            Assert.Equal(table.Pages.Count, table.Entries.Sum(e => e.Pages));
            Assert.Equal(2, table.Entries.Count);                       // the freed hole, then the next two
            Assert.Equal([1, 2], table.Entries.Select(e => e.Pages));
            Assert.Equal(table.Pages[1].Value + 1, table.Pages[2].Value);
            Assert.NotEqual(table.Pages[0].Value + 1, table.Pages[1].Value);
            buffer.Detach(att);
            buffer.Put();
        }
    }

    [Theory]
    [InlineData(DmaTranslation.Direct)]
    [InlineData(DmaTranslation.Iommu)]
    public void DM03_InDom0ADeviceSeesTheGrantersMachineFrames_WithOrWithoutIommu(DmaTranslation translation)
    {
        using var rig = new Rig(MachinePlacement.Fragmented);
        Assert.True(rig.Host.Dom0.Domain.IsDirectMapped);
        using var sharer = GrantSharer.Open(rig.PF);
        using var pages = sharer.Share(DomainId.Dom0, 1);
        Fill(pages.Memory.Span, 3);
        using var gnt = GrantDevice.Open(rig.P0);
        using var wc = gnt.ExportDmaBuf(rig.Front.Id, [.. pages.Refs], DmaBufBacking.WriteCombine);
        var device = new DmaDevice(rig.Host.Dom0.Kernel, "dev", translation);
        Assert.True(device.UsesXenSwiotlb);
        var buffer = DmaBufObject.Get(rig.P0, wc.Fd, out _)!;
        var table = MapFor(buffer, device, out var att);
        var mfn = rig.MachineFrameOf(pages.Refs[0]);
        Assert.Single(table.Segments);
        Assert.True(table.InPlace);
        Assert.True(device.TryResolveBus(table.Segments[0].DmaAddress, out var reached));
        Assert.Equal(mfn, reached);                                    // the granter's frame, no copy
        if (translation == DmaTranslation.Direct) Assert.Equal(XenPage.AddressOf(mfn.Value), table.Segments[0].DmaAddress);
        var read = new byte[XenPage.Size];
        Assert.Equal(0, device.DmaRead(table.Segments[0].DmaAddress, read));
        Assert.True(read.AsSpan().SequenceEqual(pages.Memory.Span));
        Assert.Equal(0, device.BounceBytes);
        // The device reaches nothing that is not mapped for it.
        Assert.False(device.TryResolveBus(XenPage.AddressOf(mfn.Value + 1), out _));
        buffer.Detach(att);
        buffer.Put();
        Assert.False(device.TryResolveBus(table.Segments[0].DmaAddress, out _));
    }

    [Fact]
    public void DM04_ScatteredSegmentUpTo256KiB_IsBouncedCountedAndStaleUntilSync()
    {
        using var rig = new Rig(MachinePlacement.Fragmented);
        const int Pages = Swiotlb.SegmentLimitBytes / 4096;          // 64 pages: 128 x 512 pixels
        using var sharer = GrantSharer.Open(rig.PF);
        using var pages = sharer.Share(DomainId.Dom0, Pages);
        Fill(pages.Memory.Span, 1);
        using var gnt = GrantDevice.Open(rig.P0);
        using var wc = gnt.ExportDmaBuf(rig.Front.Id, [.. pages.Refs], DmaBufBacking.WriteCombine);
        var swiotlb = rig.Host.Dom0.Kernel.Swiotlb;
        using (var engine = new ScanoutEngine(rig.Host.Dom0.Kernel))
        {
            var fb = engine.Attach(rig.P0, wc.Fd, 128, 512, 512);
            Assert.Equal(1, fb.SegmentCount);
            Assert.Equal(Swiotlb.SegmentLimitBytes, fb.BouncedBytes);
            Assert.Equal(Swiotlb.SegmentLimitBytes, engine.CpuBytesCopied);   // the copy at map time, counted
            Assert.Equal(Swiotlb.SegmentLimitBytes, swiotlb.BytesCopied);
            Assert.Equal(Pages, swiotlb.PagesInUse);
            engine.Flip(fb);
            var first = ScanOut(engine, fb, out bool zeroCopy);
            Assert.False(zeroCopy);
            Assert.Equal(0, engine.ZeroCopyFrames);
            Assert.True(first.AsSpan().SequenceEqual(pages.Memory.Span[..first.Length]));

            // The frontend draws again: the device still sees the bounce buffer's old copy until a sync.
            Fill(pages.Memory.Span, 77);
            var stale = ScanOut(engine, fb, out _);
            Assert.True(stale.AsSpan().SequenceEqual(first));
            Assert.Equal(Swiotlb.SegmentLimitBytes, fb.SyncForDevice());
            var fresh = ScanOut(engine, fb, out _);
            Assert.True(fresh.AsSpan().SequenceEqual(pages.Memory.Span[..fresh.Length]));
            Assert.Equal(2L * Swiotlb.SegmentLimitBytes, engine.CpuBytesCopied);
        }
        Assert.Equal(0, swiotlb.PagesInUse);                          // detach gave the bounce buffer back
    }

    [Fact]
    public void DM04_ScatteredSegmentLargerThan256KiB_FailsWithEnomem_AndLeaksNothing()
    {
        using var rig = new Rig(MachinePlacement.Fragmented);
        const int Pages = Swiotlb.SegmentLimitBytes / 4096 + 1;
        using var sharer = GrantSharer.Open(rig.PF);
        using var pages = sharer.Share(DomainId.Dom0, Pages);
        using var gnt = GrantDevice.Open(rig.P0);
        var swiotlb = rig.Host.Dom0.Kernel.Swiotlb;
        using (var wc = gnt.ExportDmaBuf(rig.Front.Id, [.. pages.Refs], DmaBufBacking.WriteCombine))
        using (var engine = new ScanoutEngine(rig.Host.Dom0.Kernel))
        {
            int rc = engine.TryAttach(rig.P0, wc.Fd, 64, Pages * 16, 256, out var fb, out string? reason);
            Assert.Equal(-Errno.ENOMEM, rc);
            Assert.Null(fb);
            Assert.Contains("swiotlb", reason, StringComparison.Ordinal);
            Assert.Equal(1, swiotlb.FailedMaps);
            Assert.Equal(0, swiotlb.PagesInUse);
            Assert.Equal(0, swiotlb.BytesCopied);
            Assert.Equal(0, engine.FramebufferCount);
            // A flags-0 export of the same refs is no better: its ballooned pages are consecutive in dom0's
            // numbering, so they are one entry too (DM02), with the same scattered machine frames.
            using var plain = gnt.ExportDmaBuf(rig.Front.Id, [.. pages.Refs]);
            var device = new DmaDevice(rig.Host.Dom0.Kernel, "gpu", DmaTranslation.Iommu);
            var buffer = DmaBufObject.Get(rig.P0, plain.Fd, out _)!;
            var att = buffer.Attach(device, out _)!;
            Assert.Null(buffer.MapAttachment(att, DmaDirection.ToDevice, out int e));
            Assert.Equal(-Errno.ENOMEM, e);
            Assert.Equal(2, swiotlb.FailedMaps);
            buffer.Detach(att);
            buffer.Put();
            // The export is intact and releases as usual.
            wc.Dispose();
            Assert.True(wc.WaitForRelease(Patience));
        }
        Assert.Equal(0, swiotlb.PagesInUse);
    }

    [Fact]
    public void DM05_DriverDomainDisplaySeesGuestPhysicalAddresses_OneSegmentZeroCopy_WhereDom0Fails()
    {
        using var rig = new Rig(MachinePlacement.Fragmented, driverDomain: true);
        var driver = rig.Driver!;
        Assert.False(driver.Domain.IsDirectMapped);
        const int Pages = 512;                                        // 2 MiB: far beyond what dom0 could bounce
        using var sharer = GrantSharer.Open(rig.PF);
        using var pages = sharer.Share(driver.Id, Pages);
        Fill(pages.Memory.Span, 9);
        using var gnt = GrantDevice.Open(rig.PD!);
        using var wc = gnt.ExportDmaBuf(rig.Front.Id, [.. pages.Refs], DmaBufBacking.WriteCombine);
        using (var engine = new ScanoutEngine(driver.Kernel))
        {
            Assert.False(engine.Device.UsesXenSwiotlb);
            var fb = engine.Attach(rig.PD!, wc.Fd, 1024, 512, 4096);
            Assert.Equal(1, fb.SegmentCount);
            Assert.Equal(0, fb.BouncedBytes);
            engine.Flip(fb);
            var seen = ScanOut(engine, fb, out bool zeroCopy);
            Assert.True(zeroCopy);
            Assert.True(seen.AsSpan().SequenceEqual(pages.Memory.Span));
            Fill(pages.Memory.Span, 200);                                      // visible at once: no bounce, no sync
            seen = ScanOut(engine, fb, out _);
            Assert.True(seen.AsSpan().SequenceEqual(pages.Memory.Span));
            Assert.Equal(0, engine.CpuBytesCopied);
            Assert.Equal(2, engine.ZeroCopyFrames);
            Assert.Equal(0, driver.Kernel.Swiotlb.BytesCopied);
        }

        // The same frontend pages exported in dom0 for dom0's display: ENOMEM (DM04).
        using var sharer0 = GrantSharer.Open(rig.PF);
        using var pages0 = sharer0.Share(DomainId.Dom0, Pages);
        using var gnt0 = GrantDevice.Open(rig.P0);
        using var wc0 = gnt0.ExportDmaBuf(rig.Front.Id, [.. pages0.Refs], DmaBufBacking.WriteCombine);
        using var engine0 = new ScanoutEngine(rig.Host.Dom0.Kernel);
        Assert.Equal(-Errno.ENOMEM, engine0.TryAttach(rig.P0, wc0.Fd, 1024, 512, 4096, out _, out _));
    }

    [Fact]
    public void DM06_BackendAllocatedBufferIsMachineContiguousInDom0_ScannedOutInPlace()
    {
        using var rig = new Rig(MachinePlacement.Fragmented);
        const int Pages = 1024;                                       // 4 MiB, 1024x1024 XRGB
        int fd = SystemHeap.Allocate(rig.P0, Pages, contiguous: true);
        Assert.True(fd >= 0, $"heap alloc: {fd}");
        using var gnt = GrantDevice.Open(rig.P0);
        using var import = gnt.ImportDmaBuf(fd, Pages, rig.Front.Id);  // granted to the frontend (be-alloc)
        using var frontGnt = GrantDevice.Open(rig.PF);
        using var mapping = frontGnt.Map(DomainId.Dom0, [.. import.Refs]);
        Fill(mapping.Memory.Span, 5);                                         // the frontend draws into dom0's buffer
        using (var engine = new ScanoutEngine(rig.Host.Dom0.Kernel))
        {
            var fb = engine.Attach(rig.P0, fd, 1024, 1024, 4096);
            Assert.Equal(1, fb.SegmentCount);
            Assert.Equal(0, fb.BouncedBytes);
            var buffer = DmaBufObject.Get(rig.P0, fd, out _)!;
            var first = ((GuestFrame[])buffer.ExporterData!)[0];
            buffer.Put();
            Assert.True(rig.Host.Dom0.Kernel.Domain.P2M.TryGet(first, out var mfn0, out _));
            Assert.Equal(XenPage.AddressOf(mfn0.Value), fb.DmaAddress);   // a machine address, in place
            engine.Flip(fb);
            var seen = ScanOut(engine, fb, out bool zeroCopy);
            Assert.True(zeroCopy);
            Assert.True(seen.AsSpan().SequenceEqual(mapping.Memory.Span));
            Fill(mapping.Memory.Span, 99);
            seen = ScanOut(engine, fb, out _);
            Assert.True(seen.AsSpan().SequenceEqual(mapping.Memory.Span));      // no sync needed
            Assert.Equal(0, engine.CpuBytesCopied);
            Assert.Equal(0, rig.Host.Dom0.Kernel.Swiotlb.BytesCopied);
        }
        mapping.Dispose();
        import.Dispose();
        Assert.Equal(0, rig.P0.Close(fd));
    }
}
