using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.DmaBuf;
using XenShare.Tests.Emulation;
using Xunit.Abstractions;

namespace XenShare.Tests.Reliability;

/// <summary>
/// Campaign 4: every allocation point fails at its Nth hit (N = 0, 1, 2, ... until the operation
/// succeeds without a fault) for every operation that uses it; each failure must be the spec errno and
/// leave the host exactly as before (counters and invariants), and a dying process releases everything.
/// </summary>
public sealed class FaultInjectionTests(ITestOutputHelper output) : DmaBufTest
{
    private const string Evtchn = "/dev/xen/evtchn";

    /// <summary>Everything a failed operation could leave behind, as one comparable string.</summary>
    private string Snapshot()
    {
        // Grant tables grow for good (GT03: they never shrink), so their frames are not part of the state.
        var parts = new List<string> { $"frames {Xen.FramesInUse - Dom0.Domain.GrantTable.NrFrames - DomU.Domain.GrantTable.NrFrames}" };
        foreach (var g in new[] { Dom0, DomU })
        {
            var k = g.Kernel;
            parts.Add($"{g}: ram {k.Ram.FreeCount} unpop {k.Unpopulated.FreeCount} refs {k.GrantRefsInUse} deferred {k.DeferredReclaims} " +
                      $"maptrack {g.Domain.MapTrackInUse} pins {g.Domain.GrantTable.ActivePins} bound {g.Domain.Events.BoundCount}");
        }
        parts.Add($"P0 fds {P0.OpenFdCount} maps {P0.MappingCount}; PU fds {PU.OpenFdCount} maps {PU.MappingCount}");
        return string.Join("\n", parts);
    }

    /// <summary>Runs <paramref name="op"/> with <paramref name="point"/> failing at its Nth hit for N = 0, 1,
    /// ... until an attempt meets no fault. Every faulted attempt returns an allowed errno (or succeeds
    /// when the path tolerates the fault, e.g. a batch falling back to single ops) and, after
    /// <paramref name="cleanup"/>, leaves the state as it was.</summary>
    private int FailEachNth(string name, FaultPoint point, Func<int> op, Action cleanup, params int[] allowed)
    {
        string before = Snapshot();
        for (int n = 0; n < 500; n++)
        {
            long injectedBefore = Xen.Faults.Injected(point);
            Xen.Faults.FailNth(point, n);
            int rc;
            try { rc = op(); }
            finally { Xen.Faults.Disarm(); }
            bool faulted = Xen.Faults.Injected(point) > injectedBefore;
            Assert.True(rc >= 0 || (faulted && allowed.Contains(-rc)),
                $"{name} with {point} failing at hit {n}: rc {rc} (faulted {faulted}), allowed {string.Join(",", allowed.Select(e => -e))}");
            cleanup();
            Assert.Equal(before, Snapshot());
            Checks.Invariants(Xen, $"{name} {point} N={n}");
            if (!faulted) return n;
        }
        throw new Xunit.Sdk.XunitException($"{name}: still faulting after 500 attempts");
    }

    private static readonly FaultPoint[] AllPoints = Enum.GetValues<FaultPoint>();

    private void ForEveryPoint(string name, Func<int> op, Action cleanup, params int[] allowed)
    {
        long before = Xen.Faults.TotalInjected;
        foreach (var point in AllPoints)
        {
            int n = FailEachNth(name, point, op, cleanup, allowed);
            output.WriteLine($"{name}: {point}: {n} allocation(s) on the path");
        }
        Stress.Report(output, $"faults: {name}: {Xen.Faults.TotalInjected - before} faults injected, each a spec errno, nothing left behind");
    }

    [Fact]
    public void Fault_MapGrantRefAndMmap_EveryAllocationPoint()
    {
        var g = Share(3);
        int gd = -1;
        long va = -1;
        ForEveryPoint("MAP_GRANT_REF+mmap", () =>
        {
            gd = P0.Open(GntDev, Posix.O_RDWR);
            if (gd < 0) return gd;
            var arg = Args.MapGrantRef(DomU.Id.Value, g.Refs);
            int rc = P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg);
            if (rc < 0) return rc;
            va = P0.Mmap(gd, (long)MemoryMarshal.Read<ulong>(arg.AsSpan(8)), 3 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
            return va < 0 ? (int)va : 0;
        }, () =>
        {
            if (va > 0) Assert.Equal(0, P0.Munmap(va, 3 * 4096));
            if (gd >= 0) Assert.Equal(0, P0.Close(gd));
            va = -1; gd = -1;
        }, Errno.ENOMEM, Errno.EINVAL, Errno.EMFILE);
        g.Close();
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(GntDevIoctl.GNTDEV_DMA_FLAG_WC)]
    [InlineData(GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT)]
    public void Fault_ExportFromRefs_EveryAllocationPoint(uint flags)
    {
        var g = Share(3);
        int gd = Open(P0, GntDev);
        int fd = -1;
        ForEveryPoint($"EXP_FROM_REFS 0x{flags:x}", () => Export(P0, gd, flags, DomU.Id.Value, g.Refs, out fd), () =>
        {
            if (fd >= 0) { Assert.Equal(0, P0.Close(fd)); Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 10_000)); }   // released at close (EW05)
            fd = -1;
        }, Errno.ENOMEM, Errno.EINVAL, Errno.EMFILE);   // EX07, EX06 (a grant that fails to map), EX07
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void Fault_ImportToRefs_EveryAllocationPoint()
    {
        var (buf, _) = HeapBuffer(3);
        int gd = Open(P0, GntDev);
        int rcOk = -1;
        ForEveryPoint("IMP_TO_REFS", () => rcOk = Import(P0, gd, buf, 3, DomU.Id.Value, out _), () =>
        {
            if (rcOk == 0) Assert.Equal(0, ImpRelease(P0, gd, buf));
            rcOk = -1;
        }, Errno.ENOSPC);                                                               // EI04
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(buf));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(600)]   // more than the first grant frame: the table grows (machine frame + growth points)
    public void Fault_AllocGref_EveryAllocationPoint(int count)
    {
        int ga = Open(PU, GntAlloc);
        ulong index = 0;
        bool ok = false;
        ForEveryPoint($"ALLOC_GREF {count}", () =>
        {
            var arg = Args.AllocGref(Dom0.Id.Value, (uint)count, true);
            int rc = PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg);
            ok = rc == 0;
            index = MemoryMarshal.Read<ulong>(arg.AsSpan(8));
            return rc;
        }, () =>
        {
            if (ok) Assert.Equal(0, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Args.U64U32U32(index, (uint)count, 0)));
            ok = false;
        }, Errno.ENOMEM, Errno.ENOSPC);                                                 // GA01
        Assert.Equal(0, PU.Close(ga));
    }

    [Fact]
    public void Fault_EvtchnOpenAndBind_EveryAllocationPoint()
    {
        int fd = -1;
        ForEveryPoint("evtchn open+bind", () =>
        {
            fd = P0.Open(Evtchn, Posix.O_RDWR);
            if (fd < 0) return fd;
            return P0.Ioctl(fd, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Args.Pair(DomU.Id.Value, 0).AsSpan(0, 4));
        }, () =>
        {
            if (fd >= 0) Assert.Equal(0, P0.Close(fd));
            fd = -1;
        }, Errno.EMFILE);
    }

    [Theory]
    [InlineData("/dev/dma_heap/system")]
    [InlineData("/dev/dma_heap/reserved")]
    public void Fault_DmaHeapAlloc_EveryAllocationPoint(string path)
    {
        int heap = -1, buf = -1;
        ForEveryPoint($"{path} alloc", () =>
        {
            heap = P0.Open(path, Posix.O_RDWR);
            if (heap < 0) return heap;
            var arg = Args.HeapAlloc(3 * 4096);
            int rc = P0.Ioctl(heap, DmaHeapIoctl.DMA_HEAP_IOCTL_ALLOC, arg);
            if (rc == 0) buf = (int)MemoryMarshal.Read<uint>(arg.AsSpan(8));
            return rc;
        }, () =>
        {
            if (buf >= 0) Assert.Equal(0, P0.Close(buf));
            if (heap >= 0) Assert.Equal(0, P0.Close(heap));
            buf = heap = -1;
        }, Errno.ENOMEM, Errno.EMFILE);
    }

    /// <summary>A process dies holding a mapped gntdev map, a flag-0 and a WC export (fds), an import, a
    /// bound event channel and an mmapped heap buffer; some are closed first, in every order of a
    /// permutation, the rest by exit. Everything is released; the granter's flags clear.</summary>
    [Fact]
    public void ProcessDeath_ReleasesEverything_InEveryOrder()
    {
        var g = Share(2);
        string before = Snapshot();
        var steps = new[] { "gntdev", "export0", "exportWC", "import", "evtchn", "heapmap", "heapfd" };
        int runs = 0;
        foreach (var perm in Permutations(steps.Length))
        {
            var p = Dom0.StartProcess();
            int gd = Open(p, GntDev);
            ulong off = MapGrantRefs(p, gd, DomU.Id, g.Refs);
            long va = p.Mmap(gd, (long)off, 2 * 4096, Posix.PROT_READ, Posix.MAP_SHARED);
            Assert.True(va > 0);
            Assert.Equal(0, Export(p, gd, 0, DomU.Id.Value, g.Refs, out int e0));
            Assert.Equal(0, Export(p, gd, GntDevIoctl.GNTDEV_DMA_FLAG_WC, DomU.Id.Value, g.Refs, out int ewc));
            int heap = SystemHeap.Allocate(p, 2, contiguous: false);
            Assert.True(heap >= 0);
            long hva = p.Mmap(heap, 0, 2 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
            Assert.True(hva > 0);
            Assert.Equal(0, Import(p, gd, heap, 2, DomU.Id.Value, out _));
            int ev = Open(p, "/dev/xen/evtchn");
            Assert.True(p.Ioctl(ev, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Args.Pair(DomU.Id.Value, 0).AsSpan(0, 4)) > 0);
            // Close the first part of the permutation by hand, in its order; exit releases the rest.
            int manual = runs % (steps.Length + 1);
            foreach (int i in perm.Take(manual))
            {
                int rc = steps[i] switch
                {
                    "gntdev" => p.Close(gd),
                    "export0" => p.Close(e0),
                    "exportWC" => p.Close(ewc),
                    "import" => ImpRelease(p, gd, heap) is var r && r == -Errno.EBADF ? 0 : r,
                    "evtchn" => p.Close(ev),
                    "heapmap" => p.Munmap(hva, 2 * 4096),
                    _ => p.Close(heap),
                };
                Assert.True(rc == 0 || (steps[i] == "import" && rc == -Errno.EBADF), $"{steps[i]}: {rc}");
            }
            p.Dispose();
            AssertNotMapped(g);
            Assert.Equal(before, Snapshot());
            Checks.Invariants(Xen, $"permutation {string.Join(",", perm.Select(i => steps[i]))} manual {manual}");
            runs++;
        }
        Stress.Report(output, $"faults: process death: {runs} release orders, nothing left behind");
        g.Close();
    }

    private static IEnumerable<int[]> Permutations(int n)
    {
        // Every rotation and reversal of a few shuffles plus the identity: every item first and last,
        // bounded to keep CI fast; XENSHARE_STRESS=1 runs all n! orders.
        if (Stress.Long)
        {
            foreach (var p in All(Enumerable.Range(0, n).ToArray(), 0)) yield return p;
            yield break;
        }
        var rng = new Random(n);
        for (int k = 0; k < 6; k++)
        {
            var basePerm = Enumerable.Range(0, n).OrderBy(_ => rng.Next()).ToArray();
            for (int r = 0; r < n; r++)
            {
                yield return basePerm.Skip(r).Concat(basePerm.Take(r)).ToArray();
                yield return basePerm.Skip(r).Concat(basePerm.Take(r)).Reverse().ToArray();
            }
        }
    }

    private static IEnumerable<int[]> All(int[] a, int k)
    {
        if (k == a.Length) { yield return (int[])a.Clone(); yield break; }
        for (int i = k; i < a.Length; i++)
        {
            (a[k], a[i]) = (a[i], a[k]);
            foreach (var p in All(a, k + 1)) yield return p;
            (a[k], a[i]) = (a[i], a[k]);
        }
    }
}
