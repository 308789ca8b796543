using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>
/// Regression of the isolation bug "a guest reads dom0's reused memory after IMP_RELEASE" (EI09, D02,
/// GA02, GT10), in every variant it was verified in on real Xen 4.17 / Linux 6.1: flags 0, WC and
/// COHERENT, with and without a waiter in EXP_WAIT_RELEASED, with gntalloc closed or kept open. The domU
/// keeps reading the old pattern until it unmaps; dom0's pages go back to its allocator only after that.
/// The chain that makes it so: the deferred end of the import's refs references the export's pages;
/// gntdev's unmap of the export's map waits for those references; so dom0's own grant mapping of its
/// gntalloc pages stays, and gntalloc's end of access is deferred too, holding its pages.
/// </summary>
public sealed class ReusedMemoryAfterImpReleaseTests : DmaBufTest
{
    public static TheoryData<uint, bool, bool> Variants()
    {
        var data = new TheoryData<uint, bool, bool>();
        foreach (uint flags in new[] { 0u, GntDevIoctl.GNTDEV_DMA_FLAG_WC, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT })
            foreach (bool wait in new[] { false, true })
                foreach (bool keep in new[] { false, true })
                    data.Add(flags, wait, keep);
        return data;
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void IsolationBug_EI09_D02_GA02_DomUNeverReadsDom0ReusedMemoryAfterImpRelease(uint flags, bool wait, bool keepGntallocOpen)
    {
        var r = new ReusedMemoryProbe(Dom0, P0, DomU, PU).Run(flags, wait, keepGntallocOpen);

        Assert.Equal(0, r.PagesWithSecret);
        Assert.Equal(ReusedMemoryProbe.Pages, r.PagesWithPattern);
        // While the domU maps: dom0's export map still maps dom0's gntalloc pages (its unmap waits for the
        // deferred import ends' page references), so the gntalloc grants are still pinned...
        Assert.All(r.GntallocFlagsWhileDomUMaps, f => Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, f));
        Assert.Equal(ReusedMemoryProbe.Pages, r.PagesAwaitingUnmap);
        // ... and deferred: the import's refs, plus gntalloc's own when its file was closed (GA02).
        Assert.Equal(keepGntallocOpen ? ReusedMemoryProbe.Pages : 2 * ReusedMemoryProbe.Pages, r.DeferredReclaims);
        // D02: when a deferred grant end still references the export's pages, the wait returns at release.
        if (wait) Assert.Equal(0, r.WaitResult);
        // The domU unmapped: everything was reclaimed at its unmap (D06), nothing waits, nothing leaked.
        Assert.Equal(0, Dom0.Kernel.PagesAwaitingUnmap);
        Assert.Equal(0, Dom0.Kernel.DeferredReclaims);
        Assert.All(r.ImportRefs.Concat(r.GntallocRefs), g => Assert.Equal(0, Entry(Dom0, g).Flags));
        Assert.Empty(Host.Isolation.Hazards);
        AssertNoLeaks();
    }

    [Fact]
    public void D02_NothingElseReferencesThePages_WaitReturnsAfterUnmapAndFree()
    {
        // The other half of D02: an import released while the peer maps nothing ends at once, holds no page,
        // and the export's unmap and free happen before the waiter wakes.
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g, GntDevIoctl.GNTDEV_DMA_FLAG_WC);
        Assert.Equal(0, Import(P0, gd, fd, 2, DomU.Id.Value, out _));
        Assert.Equal(0, P0.Close(fd));
        int ram = Dom0.Kernel.Ram.FreeCount;
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 0));          // released
        AssertNotMapped(g);                                          // unmapped ...
        Assert.Equal(ram + 2, Dom0.Kernel.Ram.FreeCount);            // ... and the WC backing freed
        Assert.Equal(0, Dom0.Kernel.PagesAwaitingUnmap);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }
}

/// <summary>
/// The same probe with gntdev's old synchronous unmap switched back on (a kernel option kept for this
/// test): dom0 frees its gntalloc pages while the domU maps them, the domU reads "DOM0-SECRET", and the
/// isolation monitor reports every freed frame with both domains, the frame, the domU's ref and the call.
/// </summary>
public sealed class ReusedMemoryLegacyUnmapTests() : DmaBufTest(null, new KernelOptions { SynchronousGntDevUnmap = true })
{
    [Theory]
    [InlineData(0u)]
    [InlineData(GntDevIoctl.GNTDEV_DMA_FLAG_WC)]
    [InlineData(GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT)]
    public void IsolationMonitor_FindsTheBug_WhenGntdevUnmapsSynchronously(uint flags)
    {
        var r = new ReusedMemoryProbe(Dom0, P0, DomU, PU).Run(flags, wait: false, keepGntallocOpen: false);
        Assert.Equal(ReusedMemoryProbe.Pages, r.PagesWithSecret);      // the bug, reproduced
        Assert.Equal(0, r.PagesAwaitingUnmap);

        var hazards = Host.Isolation.TakeAll();
        Assert.Equal(ReusedMemoryProbe.Pages, hazards.Count);
        var frames = new HashSet<MachineFrame>();
        foreach (var h in hazards)
        {
            Assert.Equal(IsolationHazardKind.FreedWhileMapped, h.Kind);
            Assert.Equal(DomainId.Dom0, h.Owner);
            Assert.True(h.CrossDomain);
            Assert.NotNull(h.Page);
            Assert.True(h.Page!.Value.Value < (ulong)Dom0.Domain.RamPages, "a dom0 RAM page was freed");
            var m = Assert.Single(h.Mappings, m => m.Mapper == DomU.Id);
            Assert.Equal(DomainId.Dom0, m.Granter);
            Assert.Contains(m.Ref.Value, r.ImportRefs);
            Assert.Contains("GntAllocDriver", h.Call, StringComparison.Ordinal);   // the call that freed it
            Assert.True(frames.Add(h.Frame), "one finding per frame");
        }
        Assert.Empty(Host.Isolation.Hazards);
        AssertNoLeaks();
    }
}

/// <summary>
/// The real driver's defect without CMA (docs/conformance.md): a WC/COHERENT export's backing is one
/// non-compound block whose tail pages have a count of 0, so the deferred end of an import of it takes
/// references on pages whose count is 0. The emulator reports each as a hazard instead of accepting it,
/// and stays safe (it waits for the references anyway).
/// </summary>
public sealed class ReusedMemoryWithoutCmaTests() : DmaBufTest(null, new KernelOptions { DmaWithoutCma = true })
{
    [Theory]
    [InlineData(GntDevIoctl.GNTDEV_DMA_FLAG_WC)]
    [InlineData(GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT)]
    public void DmaWithoutCma_DeferredImportEndReferencesTailPages_ReportedAsHazards(uint flags)
    {
        var r = new ReusedMemoryProbe(Dom0, P0, DomU, PU).Run(flags, wait: false, keepGntallocOpen: false);
        Assert.Equal(ReusedMemoryProbe.Pages, r.PagesWithPattern);
        Assert.Equal(0, r.PagesWithSecret);
        var hazards = Host.Isolation.TakeAll();
        Assert.Equal(ReusedMemoryProbe.Pages - 1, hazards.Count);      // every page but the block's head
        Assert.All(hazards, h =>
        {
            Assert.Equal(IsolationHazardKind.ReferenceOnFreePage, h.Kind);
            Assert.Equal(DomainId.Dom0, h.Owner);
            Assert.Contains(h.Mappings, m => m.Mapper == DomU.Id && r.ImportRefs.Contains(m.Ref.Value));
            Assert.Contains("GrantReferences.EndAccess", h.Call, StringComparison.Ordinal);
        });
        Assert.Equal(hazards.Count, hazards.Select(h => h.Page).Distinct().Count());
        AssertNoLeaks();
    }

    [Fact]
    public void DmaWithoutCma_FlagsZeroExport_NoHazard()
    {
        // Ballooned (unpopulated) pages each carry their own reference: nothing to report.
        var r = new ReusedMemoryProbe(Dom0, P0, DomU, PU).Run(0, wait: false, keepGntallocOpen: false);
        Assert.Equal(ReusedMemoryProbe.Pages, r.PagesWithPattern);
        Assert.Empty(Host.Isolation.Hazards);
    }
}
