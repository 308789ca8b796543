using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>
/// A guest destroyed while it runs (<see cref="EmulatedHost.KillGuest"/>, what <c>xl destroy</c> does to a live
/// domain; spec XD03/XD04, GT11): its kernel halts without cleaning up, Xen tears the domain down, and nothing
/// of it can touch memory afterwards. Every test ends with the base class's checks: no leak in the surviving
/// domains or in Xen (no zombie left), the invariants, no isolation hazard.
/// </summary>
public sealed class KillGuestTests : DmaBufTest
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static long MmapShared(GuestProcess p, int fd, ulong index, int pages) =>
        p.Mmap(fd, (long)index, pages * 4096L, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);

    [Fact]
    public void XD03_KillGuest_NewCallsFailWithEIO_DomainGoneAndHomeRemoved()
    {
        var victim = Host.CreateGuest();
        var pv = victim.StartProcess();
        int gd = Open(pv, "/dev/xen/gntdev");
        Assert.NotNull(Host.Xenstore.Read("/local/domain/" + victim.Id.Value));

        Host.KillGuest(victim);

        Assert.True(victim.Kernel.IsHalted);
        Assert.False(Host.DomainExists(victim.Id));   // nothing of it was mapped: no zombie
        Assert.Equal(-Errno.EIO, pv.Open("/dev/xen/gntdev", Posix.O_RDWR));
        Assert.Equal(-Errno.EIO, pv.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, MapGrantRefArg(Dom0.Id, 8)));
        Assert.Equal(-Errno.EIO, pv.Read(gd, new byte[4]));
        Assert.Equal(-Errno.EIO, pv.Close(gd));
        Assert.Null(Host.Xenstore.Read("/local/domain/" + victim.Id.Value));
        Assert.False(Host.Xenstore.IsIntroduced(victim.Id));
        pv.Dispose();
        Host.KillGuest(victim);   // a second kill of the same guest does nothing
    }

    /// <summary>Blocked calls of the dead domain (an evtchn read, a xenbus read, EXP_WAIT_RELEASED with a long
    /// timeout) return EIO at the kill, whether they were already asleep or about to sleep; many rounds so
    /// that both orders happen.</summary>
    [Fact]
    public async Task XD03_KillGuest_BlockedCallsWakeWithEIO_ManyRounds()
    {
        for (int round = 0; round < 40; round++)
        {
            var victim = Host.CreateGuest();
            var pv = victim.StartProcess();
            int ev = Open(pv, "/dev/xen/evtchn");
            int xb = Open(pv, "/dev/xen/xenbus");
            int ga = Open(pv, "/dev/xen/gntalloc");
            int gd = Open(pv, "/dev/xen/gntdev");
            var (_, refs) = AllocGrefs(pv, ga, victim.Id, 1);
            ulong idx = MapGrantRefs(pv, gd, victim.Id, refs[0]);
            _ = idx;
            Assert.Equal(0, Export(pv, gd, 0, victim.Id.Value, refs, out int dmabuf));

            var waitThread = new TaskCompletionSource<int>();
            var evRead = Task.Factory.StartNew(() => pv.Read(ev, new byte[4]), TaskCreationOptions.LongRunning);
            var xbRead = Task.Factory.StartNew(() => pv.Read(xb, new byte[64]), TaskCreationOptions.LongRunning);
            var wait = Task.Factory.StartNew(() =>
            {
                waitThread.SetResult(Environment.CurrentManagedThreadId);
                var w = Bytes(new ioctl_gntdev_dmabuf_exp_wait_released { fd = (uint)dmabuf, wait_to_ms = 600_000 });
                return (long)pv.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, w);
            }, TaskCreationOptions.LongRunning);
            if (round % 2 == 0)
            {
                // Half the rounds: kill only once the wait is seen inside the kernel.
                int tid = await waitThread.Task.WaitAsync(Patience);
                var seen = System.Diagnostics.Stopwatch.StartNew();
                while (!victim.Kernel.IsInReleaseWait(tid) && !wait.IsCompleted && seen.Elapsed < Patience) await Task.Yield();
            }

            Host.KillGuest(victim);

            var results = await Task.WhenAll(evRead, xbRead, wait).WaitAsync(Patience);
            Assert.All(results, r => Assert.Equal(-Errno.EIO, r));
            pv.Dispose();
            Assert.False(Host.DomainExists(victim.Id));
        }
    }

    /// <summary>A dead process's addresses no longer reach machine memory: what it mapped of dom0's grant and of
    /// its own RAM reads as zeros there and writes go nowhere, while dom0's own mapping of the dead domain's
    /// page keeps the content (GT11) until dom0 unmaps it, which reaps the zombie.</summary>
    [Fact]
    public unsafe void XD03_XD04_KillGuest_DeadProcessMappingsAreScratch_PeerMappingLivesOn()
    {
        var victim = Host.CreateGuest();
        var pv = victim.StartProcess();
        // dom0 grants a page to the victim, which maps it (XD04's shape).
        int ga0 = Open(P0, "/dev/xen/gntalloc");
        var (gi0, refs0) = AllocGrefs(P0, ga0, victim.Id, 1);
        long va0 = MmapShared(P0, ga0, gi0, 1);
        "DOM0"u8.CopyTo(new Span<byte>((void*)va0, 4096));
        int gdV = Open(pv, "/dev/xen/gntdev");
        ulong iV = MapGrantRefs(pv, gdV, Dom0.Id, refs0[0]);
        long vaV = MmapShared(pv, gdV, iV, 1);
        Assert.True(new ReadOnlySpan<byte>((void*)vaV, 4).SequenceEqual("DOM0"u8));
        // The victim grants a page to dom0, which maps it (XD03's shape).
        int gaV = Open(pv, "/dev/xen/gntalloc");
        var (giV, refsV) = AllocGrefs(pv, gaV, Dom0.Id, 1);
        long vaVOwn = MmapShared(pv, gaV, giV, 1);
        "VICTIM"u8.CopyTo(new Span<byte>((void*)vaVOwn, 4096));
        int gd0 = Open(P0, "/dev/xen/gntdev");
        ulong i0 = MapGrantRefs(P0, gd0, victim.Id, refsV[0]);
        long va0Peer = MmapShared(P0, gd0, i0, 1);

        Host.KillGuest(victim);

        Assert.True(Host.DomainExists(victim.Id));   // a zombie: dom0 still maps its page
        // The dead process's addresses are scratch now.
        Assert.Equal(0, ((byte*)vaV)[0]);
        Assert.Equal(0, ((byte*)vaVOwn)[0]);
        ((byte*)vaV)[1] = 0xEE;
        ((byte*)vaVOwn)[1] = 0xEE;
        Assert.True(new ReadOnlySpan<byte>((void*)va0, 4).SequenceEqual("DOM0"u8));
        Assert.True(new ReadOnlySpan<byte>((void*)va0Peer, 6).SequenceEqual("VICTIM"u8));
        // XD04: Xen unmapped the victim's mapping of dom0's grant, so dom0 ends its grant at once.
        Assert.Equal(0, P0.Munmap(va0, 4096));
        Assert.Equal(0, P0.Ioctl(ga0, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Bytes(new ioctl_gntalloc_dealloc_gref { index = gi0, count = 1 })));
        Assert.Equal(0, Dom0.Kernel.DeferredReclaims);
        // XD03: dom0's mapping of the dead domain's page lives on until dom0 lets go.
        ((byte*)va0Peer)[100] = 0x42;
        Assert.Equal(0x42, ((byte*)va0Peer)[100]);
        Assert.Equal(0, P0.Munmap(va0Peer, 4096));
        Assert.Equal(0, UnmapGrantRef(P0, gd0, i0, 1));
        Assert.False(Host.DomainExists(victim.Id));
        Assert.Equal(0, P0.Close(gd0));
        Assert.Equal(0, P0.Close(ga0));
        pv.Dispose();
        Assert.Equal(0, Xen.ZombieCount);
    }

    /// <summary>A guest killed at any moment of a map / mmap / munmap / unmap loop over dom0's grant, and of a
    /// grant loop of its own that dom0 maps: afterwards dom0 ends its grants at once (nothing of the dead
    /// domain still maps them), no zombie is left once dom0 unmaps, and the isolation monitor saw no hazard.</summary>
    [Fact]
    public async Task XD03_XD04_KillGuest_MidLoop_Race_NothingLeaksNoHazard()
    {
        int ga0 = Open(P0, "/dev/xen/gntalloc");
        int gd0 = Open(P0, "/dev/xen/gntdev");
        var rng = new Random(12345);
        for (int round = 0; round < 30; round++)
        {
            var victim = Host.CreateGuest();
            var pv = victim.StartProcess();
            var (gi0, refs0) = AllocGrefs(P0, ga0, victim.Id, 2);
            int gdV = Open(pv, "/dev/xen/gntdev");
            int gaV = Open(pv, "/dev/xen/gntalloc");
            var (_, refsV) = AllocGrefs(pv, gaV, Dom0.Id, 1);
            ulong i0 = MapGrantRefs(P0, gd0, victim.Id, refsV[0]);
            long va0 = MmapShared(P0, gd0, i0, 1);
            Assert.True(va0 > 0);
            using var stop = new CancellationTokenSource();
            var loop = Task.Factory.StartNew(() =>
            {
                int iterations = 0;
                while (!stop.IsCancellationRequested)
                {
                    var arg = MapGrantRefArg(Dom0.Id, refs0);
                    if (pv.Ioctl(gdV, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg) < 0) break;
                    ulong idx = Read<ioctl_gntdev_map_grant_ref>(arg).index;
                    long va = MmapShared(pv, gdV, idx, 2);
                    if (va > 0 && pv.Munmap(va, 2 * 4096) < 0) break;
                    if (UnmapGrantRef(pv, gdV, idx, 2) < 0) break;
                    iterations++;
                }
                return iterations;
            }, TaskCreationOptions.LongRunning);
            // Let the loop run a little, a different amount each round (an event count, not a sleep).
            int spins = rng.Next(0, 2000);
            for (int i = 0; i < spins; i++) await Task.Yield();

            Host.KillGuest(victim);
            stop.Cancel();
            await loop.WaitAsync(Patience);

            // XD04: nothing of the dead domain maps dom0's grants any more: they end at once.
            Assert.Equal(0, P0.Ioctl(ga0, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Bytes(new ioctl_gntalloc_dealloc_gref { index = gi0, count = 2 })));
            Assert.Equal(0, Dom0.Kernel.DeferredReclaims);
            // XD03: dom0's mapping of the dead domain's page holds a zombie until dom0 unmaps.
            Assert.True(Host.DomainExists(victim.Id));
            Assert.Equal(0, P0.Munmap(va0, 4096));
            Assert.Equal(0, UnmapGrantRef(P0, gd0, i0, 1));
            Assert.False(Host.DomainExists(victim.Id));
            pv.Dispose();
            Assert.Empty(Host.CheckIsolation());
        }
        Assert.Equal(0, P0.Close(gd0));
        Assert.Equal(0, P0.Close(ga0));
    }
}
