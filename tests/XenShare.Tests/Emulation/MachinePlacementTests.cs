using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Emulation;

/// <summary>DM01: where a domain's RAM lies in machine memory (extents from the top, a fragmented mode for
/// tests, the direct-mapped bank of an Arm dom0).</summary>
public sealed class MachinePlacementTests
{
    private static readonly DomainId DomU1 = new(1), DomU2 = new(2), DomU3 = new(3);

    /// <summary>The machine frame behind every RAM GFN of a domain.</summary>
    private static ulong[] Frames(Domain d)
    {
        var frames = new ulong[d.RamPages];
        for (int g = 0; g < d.RamPages; g++)
        {
            Assert.True(d.P2M.TryGet(new GuestFrame((ulong)g), out var mfn, out bool foreign), $"{d} gfn {g} not populated");
            Assert.False(foreign);
            frames[g] = mfn.Value;
        }
        return frames;
    }

    /// <summary>Maximal runs of guest frames that are machine-consecutive: (first guest frame, first
    /// machine frame, length).</summary>
    private static List<(int Gfn, ulong Mfn, int Length)> Runs(ulong[] frames)
    {
        var runs = new List<(int, ulong, int)>();
        int start = 0;
        for (int g = 1; g <= frames.Length; g++)
            if (g == frames.Length || frames[g] != frames[g - 1] + 1)
            {
                runs.Add((start, frames[start], g - start));
                start = g;
            }
        return runs;
    }

    private static void AssertClean(XenHost xen)
    {
        var broken = HypervisorInvariants.Check(xen);
        Assert.True(broken.Count == 0, string.Join("\n", broken.Take(20)));
    }

    [Fact]
    public void DM01_Extents_IsTheDefault_AndADomUIsIn2MiBAlignedExtentsGoingDownward()
    {
        using var xen = new XenHost();
        Assert.Equal(MachinePlacement.Extents, xen.Placement);
        xen.CreateDomain(new DomainConfig { Id = DomainId.Dom0 });
        long free = xen.Memory.FreeFrames;
        var d = xen.CreateDomain(new DomainConfig { Id = DomU1, RamPages = 4096 });   // 16 MiB
        Assert.False(d.IsDirectMapped);
        var frames = Frames(d);
        var runs = Runs(frames);
        Assert.Equal(8, runs.Count);
        for (int k = 0; k < runs.Count; k++)
        {
            Assert.Equal(512 * k, runs[k].Gfn);
            Assert.Equal(512, runs[k].Length);
            Assert.Equal(0UL, runs[k].Mfn % 512);                       // 512-frame aligned machine run
            if (k > 0)
            {
                Assert.True(runs[k].Mfn < runs[k - 1].Mfn, $"extent {k} at {runs[k].Mfn} is not below extent {k - 1} at {runs[k - 1].Mfn}");
                Assert.NotEqual(frames[512 * k - 1] + 1, frames[512 * k]);   // the boundary is not machine-consecutive
            }
        }
        Assert.Equal((ulong)xen.Memory.FrameCount - 512, runs[0].Mfn);  // from the top of machine memory
        Assert.Equal(4096, frames.Distinct().Count());
        foreach (var f in frames) Assert.Equal(d.Id, xen.Memory.OwnerOf(new MachineFrame(f)));
        AssertClean(xen);
        xen.DestroyDomain(d.Id);
        Assert.Equal(free, xen.Memory.FreeFrames);
        AssertClean(xen);
    }

    [Fact]
    public void DM01_Extents_TwoDomUs_AreAdjacentWithoutOverlap_AndAThirdInterleavesWithThem()
    {
        using var xen = new XenHost();
        xen.CreateDomain(new DomainConfig { Id = DomainId.Dom0 });
        long free = xen.Memory.FreeFrames;
        var a = xen.CreateDomain(new DomainConfig { Id = DomU1, RamPages = 1024 });
        var b = xen.CreateDomain(new DomainConfig { Id = DomU2, RamPages = 1024 });
        ulong[] fa = Frames(a), fb = Frames(b);
        Assert.Empty(fa.Intersect(fb));
        Assert.Equal(fa.Min(), fb.Max() + 1);                            // b's extents right below a's
        Assert.All(Runs(fa).Concat(Runs(fb)), r => Assert.Equal(512, r.Length));

        // a goes; c takes a's two extents at the top, then continues below b: c's RAM surrounds b's.
        xen.DestroyDomain(a.Id);
        var c = xen.CreateDomain(new DomainConfig { Id = DomU3, RamPages = 2048 });
        ulong[] fc = Frames(c);
        Assert.Empty(fc.Intersect(fb));
        Assert.Equal(fa.OrderBy(f => f), fc.Take(1024).OrderBy(f => f));
        Assert.True(fc.Skip(1024).All(f => f < fb.Min()), "c's last extents are not below b");
        Assert.True(fc.Min() < fb.Min() && fc.Max() > fb.Max(), "c does not interleave with b");
        var runs = Runs(fc);
        Assert.Equal(4, runs.Count);
        for (int k = 1; k < runs.Count; k++) Assert.True(runs[k].Mfn < runs[k - 1].Mfn);
        AssertClean(xen);
        xen.DestroyDomain(b.Id);
        xen.DestroyDomain(c.Id);
        Assert.Equal(free, xen.Memory.FreeFrames);
        AssertClean(xen);
    }

    [Fact]
    public void DM01_Extents_SmallHost_TakesTheLargestSmallerPowerOfTwoAlignedRuns()
    {
        // 768 frames: the only 512-aligned run holds frame 0 (never handed out) and the next one does not
        // fit, so no 2 MiB extent exists; [256, 512) and [512, 768) are the largest aligned free runs.
        using var xen = new XenHost(768);
        var a = xen.CreateDomain(new DomainConfig { Id = DomU1, RamPages = 512 });   // its grant frame is frame 1
        Assert.Equal([(0, 512UL, 256), (256, 256UL, 256)], Runs(Frames(a)));

        // Left: frames 3..255 (frame 2 is b's grant frame). 200 pages: 128 at [128, 256), 64 at [64, 128),
        // then 8 (the largest power of two the remaining 8 pages need) at [56, 64).
        var b = xen.CreateDomain(new DomainConfig { Id = DomU2, RamPages = 200 });
        var runs = Runs(Frames(b));
        Assert.Equal([(0, 128UL, 128), (128, 64UL, 64), (192, 56UL, 8)], runs);
        Assert.All(runs, r => Assert.Equal(0UL, r.Mfn % (ulong)r.Length));

        // Memory fragmented into odd holes: every extent is still an aligned power-of-two run.
        var c = xen.CreateDomain(new DomainConfig { Id = DomU3, RamPages = 40 });
        foreach (var r in Runs(Frames(c)))
        {
            Assert.True(System.Numerics.BitOperations.IsPow2(r.Length), $"run of {r.Length}");
            Assert.Equal(0UL, r.Mfn % (ulong)r.Length);
        }
        AssertClean(xen);
        long free = xen.Memory.FreeFrames;
        Assert.Throws<InvalidOperationException>(() => xen.CreateDomain(new DomainConfig { Id = new DomainId(4), RamPages = (int)free }));
        Assert.Equal(free, xen.Memory.FreeFrames);                       // the grant frame and extents went back
        AssertClean(xen);
    }

    [Fact]
    public void DM01_Fragmented_NoTwoConsecutiveGuestFramesAreMachineConsecutive()
    {
        using var xen = new XenHost(placement: MachinePlacement.Fragmented);
        Assert.Equal(MachinePlacement.Fragmented, xen.Placement);
        xen.CreateDomain(new DomainConfig { Id = DomainId.Dom0 });
        var a = xen.CreateDomain(new DomainConfig { Id = DomU1 });
        var b = xen.CreateDomain(new DomainConfig { Id = DomU2 });
        foreach (var d in new[] { a, b })
        {
            var frames = Frames(d);
            for (int g = 1; g < frames.Length; g++)
                Assert.True(frames[g] != frames[g - 1] + 1 && frames[g] + 1 != frames[g - 1],
                    $"{d} gfns {g - 1},{g}: frames {frames[g - 1]},{frames[g]}");
            Assert.Equal(frames.Length, frames.Distinct().Count());
        }
        Assert.Empty(Frames(a).Intersect(Frames(b)));

        // Deterministic: a second host built the same way places the same frames.
        using var again = new XenHost(placement: MachinePlacement.Fragmented);
        again.CreateDomain(new DomainConfig { Id = DomainId.Dom0 });
        Assert.Equal(Frames(a), Frames(again.CreateDomain(new DomainConfig { Id = DomU1 })));
        AssertClean(xen);
    }

    [Fact]
    public void DM01_Fragmented_NearlyFullMemory_StillAllocatesEveryFreeFrame()
    {
        using var xen = new XenHost(256, MachinePlacement.Fragmented);
        // 256 frames: 0 reserved, 1 for the grant frame; the rest is exactly this domain's RAM.
        var d = xen.CreateDomain(new DomainConfig { Id = DomU1, RamPages = 254 });
        Assert.Equal(0, xen.Memory.FreeFrames);
        var frames = Frames(d);
        Assert.Equal(254, frames.Distinct().Count());
        // The walk keeps pages apart until only frames next to the previous one are left.
        int consecutive = 0;
        for (int g = 1; g < frames.Length; g++) if (frames[g] == frames[g - 1] + 1 || frames[g] + 1 == frames[g - 1]) consecutive++;
        Assert.True(consecutive <= 2, $"{consecutive} machine-consecutive pairs");
        AssertClean(xen);
        xen.DestroyDomain(d.Id);
        Assert.Equal(255, xen.Memory.FreeFrames);                        // its RAM and its grant frame
    }

    [Fact]
    public void DM01_Fragmented_HostBootsDom0AndADomU_SharesAPage_AndDoesNotLeak()
    {
        using var host = new EmulatedHost(placement: MachinePlacement.Fragmented);
        Assert.Equal(MachinePlacement.Fragmented, host.Xen.Placement);
        Assert.True(host.Dom0.Domain.IsDirectMapped);
        Assert.Single(Runs(Frames(host.Dom0.Domain)));                   // the bank stays one run
        long free = host.Xen.Memory.FreeFrames;
        var domU = host.CreateGuest();
        Assert.False(domU.Domain.IsDirectMapped);
        Assert.Equal(domU.Domain.RamPages, Runs(Frames(domU.Domain)).Count);   // every page its own run

        using (var pu = domU.StartProcess())
        using (var p0 = host.Dom0.StartProcess())
        {
            int ga = pu.Open("/dev/xen/gntalloc", Posix.O_RDWR);
            Assert.True(ga >= 0, ga.ToString(System.Globalization.CultureInfo.InvariantCulture));
            var arg = EmulatorTest.AllocGrefArg(DomainId.Dom0, 4, writable: true);
            Assert.Equal(0, pu.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg));
            long index = System.Runtime.InteropServices.MemoryMarshal.Read<long>(arg.AsSpan(8));
            uint[] refs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16, 16)).ToArray();
            long ua = pu.Mmap(ga, index, 4 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
            Assert.True(ua > 0);
            for (int i = 0; i < 4; i++) GuestMemory.AsSpan(ua, 4 * 4096)[i * 4096 + 7] = (byte)(0x40 + i);

            int gd = p0.Open("/dev/xen/gntdev", Posix.O_RDWR);
            ulong off = EmulatorTest.MapGrantRefs(p0, gd, domU.Id, refs);
            long da = p0.Mmap(gd, (long)off, 4 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
            Assert.True(da > 0);
            for (int i = 0; i < 4; i++) Assert.Equal(0x40 + i, GuestMemory.AsSpan(da, 4 * 4096)[i * 4096 + 7]);
            Assert.Equal(0, p0.Munmap(da, 4 * 4096));
            Assert.Equal(0, EmulatorTest.UnmapGrantRef(p0, gd, off, 4));
            Assert.Equal(0, p0.Close(gd));
            Assert.Equal(0, pu.Munmap(ua, 4 * 4096));
            Assert.Equal(0, pu.Close(ga));
        }
        Assert.Empty(host.CheckLeaks());
        Assert.Empty(host.CheckIsolation());
        AssertClean(host.Xen);
        host.DestroyGuest(domU);
        Assert.Equal(free, host.Xen.Memory.FreeFrames);
        Assert.Empty(host.CheckLeaks());
        AssertClean(host.Xen);
    }

    [Theory]
    [InlineData(MachinePlacement.Extents)]
    [InlineData(MachinePlacement.Fragmented)]
    public void DM01_Dom0IsDirectMapped_OneContiguousRunFromTheBottom_ADomUIsNot(MachinePlacement placement)
    {
        using var host = new EmulatedHost(placement: placement);
        var dom0 = host.Dom0.Domain;
        Assert.True(dom0.IsDirectMapped);
        var frames = Frames(dom0);
        var run = Assert.Single(Runs(frames));
        Assert.Equal(dom0.RamPages, run.Length);
        Assert.True(run.Mfn < (ulong)host.Xen.Memory.FrameCount / 2, $"dom0's bank at {run.Mfn} is not at the bottom");
        var domU = host.CreateGuest();
        Assert.False(domU.Domain.IsDirectMapped);
        Assert.True(Runs(Frames(domU.Domain)).Count > 1);
        Assert.True(Frames(domU.Domain).Min() > frames.Max());            // domU RAM above the bank
    }

    [Fact]
    public void DM01_DirectMappedDefault_OnlyForAnArm64Dom0()
    {
        using var xen = new XenHost();
        var x86Dom0 = xen.CreateDomain(new DomainConfig { Id = DomainId.Dom0, Type = DomainType.X86Hvm });
        Assert.False(x86Dom0.IsDirectMapped);
        Assert.Equal(8, Runs(Frames(x86Dom0)).Count);
        var arm = xen.CreateDomain(new DomainConfig { Id = DomU1 });
        Assert.False(arm.IsDirectMapped);
        AssertClean(xen);
        using var other = new XenHost(8192);
        Assert.False(other.CreateDomain(new DomainConfig { Id = DomainId.Dom0, DirectMapped = false }).IsDirectMapped);
        Assert.True(other.CreateDomain(new DomainConfig { Id = DomU1, Type = DomainType.X86Hvm, RamPages = 1024, DirectMapped = true }).IsDirectMapped);
    }

    [Theory]
    [InlineData(MachinePlacement.Extents)]
    [InlineData(MachinePlacement.Fragmented)]
    public void DM01_DirectMappedDomU_GetsOneContiguousRun(MachinePlacement placement)
    {
        using var host = new EmulatedHost(placement: placement);
        long free = host.Xen.Memory.FreeFrames;
        var g = host.CreateGuest(new DomainConfig { DirectMapped = true, RamPages = 3000 });
        Assert.True(g.Domain.IsDirectMapped);
        var run = Assert.Single(Runs(Frames(g.Domain)));
        Assert.Equal(3000, run.Length);
        Assert.Empty(Frames(g.Domain).Intersect(Frames(host.Dom0.Domain)));
        AssertClean(host.Xen);
        host.DestroyGuest(g);
        Assert.Equal(free, host.Xen.Memory.FreeFrames);
    }

    [Fact]
    public void DM01_DirectMapped_BalloonCycle_GetsTheBankFrameBack()
    {
        using var xen = new XenHost();
        var dom0 = xen.CreateDomain(new DomainConfig { Id = DomainId.Dom0 });
        var before = Frames(dom0);
        Assert.True(xen.DecreaseReservation(dom0, new GuestFrame(100)));
        Assert.True(xen.DecreaseReservation(dom0, new GuestFrame(200)));
        // GFN 200 first: the lowest free frame is GFN 100's, but the bank's own frame comes back.
        Assert.True(xen.PopulatePhysmap(dom0, new GuestFrame(200)));
        Assert.True(xen.PopulatePhysmap(dom0, new GuestFrame(100)));
        Assert.Equal(before, Frames(dom0));
        Assert.Single(Runs(Frames(dom0)));
        // A domain that is not direct-mapped gets the lowest free frame, as before: the one after its grant
        // frame, which follows dom0's bank.
        var domU = xen.CreateDomain(new DomainConfig { Id = DomU1 });
        Assert.True(xen.DecreaseReservation(domU, new GuestFrame(5)));
        Assert.True(xen.PopulatePhysmap(domU, new GuestFrame(5)));
        Assert.True(domU.P2M.TryGet(new GuestFrame(5), out var mfn, out _));
        Assert.Equal(before[^1] + 2, mfn.Value);
        AssertClean(xen);
    }

    [Fact]
    public void DM01_DirectMapped_NoContiguousRun_Throws_AndKeepsNothing()
    {
        using var xen = new XenHost(1024, MachinePlacement.Fragmented);
        xen.CreateDomain(new DomainConfig { Id = DomU1, RamPages = 200 });   // scattered over all of memory
        long free = xen.Memory.FreeFrames;
        Assert.True(free > 400);
        var ex = Assert.Throws<InvalidOperationException>(() => xen.CreateDomain(new DomainConfig { Id = DomU2, RamPages = 400, DirectMapped = true }));
        Assert.Contains("contiguous", ex.Message, StringComparison.Ordinal);
        Assert.Equal(free, xen.Memory.FreeFrames);
        Assert.False(xen.DomainExists(DomU2));
        AssertClean(xen);
        // The same domain not direct-mapped fits.
        Assert.False(xen.CreateDomain(new DomainConfig { Id = DomU2, RamPages = 400 }).IsDirectMapped);
        AssertClean(xen);
    }

    [Theory]
    [InlineData(MachinePlacement.Extents, false, 2048)]
    [InlineData(MachinePlacement.Fragmented, false, 64)]
    [InlineData(MachinePlacement.Extents, true, 2048)]
    public void DM01_MachineFrameFaultDuringCreation_LeaksNothing(MachinePlacement placement, bool directMapped, int pages)
    {
        using var xen = new XenHost(placement: placement);
        xen.CreateDomain(new DomainConfig { Id = DomainId.Dom0 });
        long free = xen.Memory.FreeFrames;
        var config = new DomainConfig { Id = DomU1, RamPages = pages, DirectMapped = directMapped };
        int n = 0;
        for (; n < 1000; n++)
        {
            long injected = xen.Faults.Injected(FaultPoint.MachineFrame);
            xen.Faults.FailNth(FaultPoint.MachineFrame, n);
            Domain? d = null;
            try { d = xen.CreateDomain(config); }
            catch (InvalidOperationException) { }
            finally { xen.Faults.Disarm(); }
            bool faulted = xen.Faults.Injected(FaultPoint.MachineFrame) > injected;
            Assert.Equal(faulted, d is null);
            if (d is null)
            {
                Assert.Equal(free, xen.Memory.FreeFrames);
                Assert.False(xen.DomainExists(DomU1));
                AssertClean(xen);
                continue;
            }
            Assert.Equal(directMapped, d.IsDirectMapped);
            xen.DestroyDomain(d.Id);
            Assert.Equal(free, xen.Memory.FreeFrames);
            break;
        }
        // The grant frame, then one hit per extent (4 of 2 MiB), the bank, or each scattered page.
        int expected = directMapped ? 2 : placement == MachinePlacement.Extents ? 1 + pages / 512 : 1 + pages;
        Assert.Equal(expected, n);
        AssertClean(xen);
    }
}
