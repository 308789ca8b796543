using XenShare.Abi;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Emulation;

/// <summary>
/// The isolation monitor (the cross-domain use-after-free detector) at each point where it looks: a guest
/// page freed while its frame is grant-mapped, Xen freeing, scrubbing or handing out a pinned frame, and a
/// reference taken on a page whose count is 0; and the typed API users assert on. The invalid states are
/// provoked through internal hooks, since the emulator never reaches them on its own (the rest of the
/// suite checks exactly that after every test).
/// </summary>
public sealed class IsolationMonitorTests : GrantTableTestBase
{
    private Domain D0 => Dom0.Domain;

    [Fact]
    public void GrantMappingsOf_NamesEveryMapperRefAndPin()
    {
        var g = Grant(DomU, Dom0.Id);
        var frame = FrameOf(g);
        Assert.Empty(Xen.GrantMappingsOf(frame));
        var a = MapOk(D0, g, 0);
        var m = Assert.Single(Xen.GrantMappingsOf(frame));
        Assert.Equal(new FrameGrantMapping(Dom0.Id, DomU.Id, g.GrantRef, 1), m);
        Assert.Equal("dom0 maps ref " + g.Ref + " of dom1 (1 pin)", m.ToString());
        var b = MapOk(D0, g, 1, GntMap.host_map | GntMap.@readonly);
        Assert.Equal(2, Assert.Single(Xen.GrantMappingsOf(frame)).Pins);
        Assert.Equal(2, Xen.Memory.GrantPinsOf(frame));
        UnmapOk(D0, a);
        UnmapOk(D0, b);
        Assert.Empty(Xen.GrantMappingsOf(frame));
        Assert.Equal(0, Xen.Memory.GrantPinsOf(frame));
        Revoke(g);
    }

    [Fact]
    public void FreedWhileMapped_AGuestFreesAPageAnotherDomainMaps_IsReportedWithBothDomainsRefAndCall()
    {
        var g = Grant(DomU, Dom0.Id);
        var frame = FrameOf(g);
        var op = MapOk(D0, g, 0);
        IsolationHazard? raised = null;
        Host.Isolation.HazardDetected += (_, h) => raised = h;

        DomU.Kernel.FreePage(g.Gfn);   // a buggy driver: frees a page whose grant dom0 still maps

        var h = Assert.Single(Host.Isolation.TakeAll());
        Assert.Same(h, raised);
        Assert.Equal(IsolationHazardKind.FreedWhileMapped, h.Kind);
        Assert.Equal(DomU.Id, h.Owner);
        Assert.Equal(g.Gfn, h.Page);
        Assert.Equal(frame, h.Frame);
        Assert.True(h.CrossDomain);
        Assert.Equal(new FrameGrantMapping(Dom0.Id, DomU.Id, g.GrantRef, 1), Assert.Single(h.Mappings));
        Assert.Contains(nameof(FreedWhileMapped_AGuestFreesAPageAnotherDomainMaps_IsReportedWithBothDomainsRefAndCall), h.Call, StringComparison.Ordinal);
        Assert.StartsWith("GuestKernel.ReturnToAllocator", h.Call, StringComparison.Ordinal);
        Assert.Contains("FreedWhileMapped: dom1 gfn", h.ToString(), StringComparison.Ordinal);
        Assert.Empty(Host.Isolation.Hazards);

        // Back to a clean state: dom0 unmaps, domU ends access (the page is already back in its allocator).
        UnmapOk(D0, op);
        Assert.True(DomU.Kernel.Grants.TryEndAccess(g.Ref));
        DomU.Kernel.Grants.Free(g.Ref);
    }

    [Fact]
    public void FreedWhileMapped_SelfMapping_IsReportedButNotCrossDomain()
    {
        var g = Grant(Dom0, Dom0.Id);
        var op = MapOk(D0, g, 0);
        Dom0.Kernel.FreePage(g.Gfn);
        var h = Assert.Single(Host.Isolation.TakeAll());
        Assert.False(h.CrossDomain);
        Assert.Equal(Dom0.Id, Assert.Single(h.Mappings).Mapper);
        UnmapOk(D0, op);
        Assert.True(Dom0.Kernel.Grants.TryEndAccess(g.Ref));
        Dom0.Kernel.Grants.Free(g.Ref);
    }

    [Fact]
    public void MachineMemory_FreeScrubAndReassignOfAPinnedFrame_AreReported()
    {
        var mem = Xen.Memory;
        Assert.True(mem.TryAllocate(new DomainId(7), 991, out var f));
        // A frame whose grant pins were not accounted for in its reference count (a hypervisor bug).
        mem.AddGrantPin(f);
        Assert.True(mem.Put(f));
        var freed = Assert.Single(Host.Isolation.TakeAll());
        Assert.Equal(IsolationHazardKind.FreedWhileMapped, freed.Kind);
        Assert.Equal(f, freed.Frame);
        Assert.Equal(new DomainId(7), freed.Owner);
        Assert.Null(freed.Page);

        // The free frame is handed out again, to another domain instance: reassigned, and scrubbed.
        var taken = new List<MachineFrame>();
        MachineFrame got;
        do
        {
            Assert.True(mem.TryAllocate(new DomainId(8), 992, out got));
            taken.Add(got);
        }
        while (got != f);
        var kinds = Host.Isolation.TakeAll().Select(h => h.Kind).ToList();
        Assert.Equal([IsolationHazardKind.ReassignedWhileMapped, IsolationHazardKind.ScrubbedWhileMapped], kinds);
        mem.RemoveGrantPin(f);
        foreach (var t in taken) mem.Put(t);
        Assert.Empty(Host.Isolation.Hazards);
    }

    [Fact]
    public void ReferenceOnFreePage_GetOnAFreePage_IsReported_AndItsPutFreesNothing()
    {
        var pages = new GuestFrame[1];
        Assert.True(Dom0.Kernel.TryAllocPages(pages, zero: false));
        Dom0.Kernel.FreePage(pages[0]);
        int free = Dom0.Kernel.Ram.FreeCount;
        Dom0.Kernel.GetPage(pages[0]);   // a stray get_page on a page that is back in the allocator
        var h = Assert.Single(Host.Isolation.TakeAll());
        Assert.Equal(IsolationHazardKind.ReferenceOnFreePage, h.Kind);
        Assert.Equal(pages[0], h.Page);
        Dom0.Kernel.PutPage(pages[0]);   // goes without freeing the page a second time
        Assert.Equal(free, Dom0.Kernel.Ram.FreeCount);
        Assert.Equal(0, Dom0.Kernel.Pages.CountOf(pages[0]));
    }

    [Fact]
    public void Check_KeepsAtMostMaxKept_AndCountsTheRest()
    {
        var pages = new GuestFrame[1];
        Assert.True(Dom0.Kernel.TryAllocPages(pages, zero: false));
        Dom0.Kernel.FreePage(pages[0]);
        for (int i = 0; i < IsolationMonitor.MaxKept + 3; i++)
        {
            Dom0.Kernel.GetPage(pages[0]);
            Dom0.Kernel.PutPage(pages[0]);
        }
        Assert.Equal(IsolationMonitor.MaxKept + 3, Host.Isolation.TotalHazards);
        Assert.Equal(IsolationMonitor.MaxKept, Host.Isolation.Hazards.Count);
        var lines = Host.CheckIsolation();
        Assert.Equal(IsolationMonitor.MaxKept + 1, lines.Count);
        Assert.Equal("isolation hazard: 3 more not kept", lines[^1]);
        Host.Isolation.Clear();
        Assert.Equal(0, Host.Isolation.TotalHazards);
        Assert.Empty(Host.CheckIsolation());
    }

    private static MachineFrame FrameOf(Granted g) => MfnOf(g);
}
