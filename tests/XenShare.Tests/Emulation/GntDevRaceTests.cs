using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>Concurrency on gntdev (GD01-GD03, GD09): map/mmap/unmap from several threads on one file and on
/// separate files, two threads racing for one map, and close racing with map/mmap. Nothing may crash,
/// deadlock or leak.</summary>
public sealed class GntDevRaceTests : EmulatorTest
{
    private const int RW = Posix.PROT_READ | Posix.PROT_WRITE;
    private const int Page = 4096;
    private const int Pages = 8;
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromSeconds(60);

    private (int Fd, uint[] Refs, long Addr) Share()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (index, refs) = AllocGrefs(PU, ga, Dom0.Id, Pages);
        long addr = PU.Mmap(ga, (long)index, Pages * (long)Page, RW, Posix.MAP_SHARED);
        Assert.True(addr > 0);
        return (ga, refs, addr);
    }

    private void Unshare((int Fd, uint[] Refs, long Addr) s)
    {
        Assert.Equal(0, PU.Munmap(s.Addr, Pages * (long)Page));
        Assert.Equal(0, PU.Close(s.Fd));
    }

    private static void RunThreads(int n, Action<int> body)
    {
        var errors = new ConcurrentQueue<Exception>();
        var threads = new Thread[n];
        for (int t = 0; t < n; t++)
        {
            int id = t;
            threads[t] = new Thread(() =>
            {
                try { body(id); }
                catch (Exception e) { errors.Enqueue(e); }
            });
            threads[t].Start();
        }
        foreach (var th in threads) Assert.True(th.Join(JoinTimeout), "thread did not finish (deadlock?)");
        if (!errors.IsEmpty) throw new AggregateException(errors);
    }

    private static int MapRc(GuestProcess p, int fd, byte[] arg) => p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg);

    /// <summary>One map/mmap/use/unmap cycle; asserts every step succeeds.</summary>
    private void Cycle(int fd, uint[] refs, int t, int i, long shared)
    {
        int n = 1 + (t + i) % 3;
        var mine = new uint[n];
        for (int k = 0; k < n; k++) mine[k] = refs[(t * 2 + k) % Pages];
        var arg = MapGrantRefArg(DomU.Id, mine);
        Assert.Equal(0, MapRc(P0, fd, arg));
        ulong off = MemoryMarshal.Read<ulong>(arg.AsSpan(8));
        long a = P0.Mmap(fd, (long)off, n * (long)Page, RW, Posix.MAP_SHARED);
        Assert.True(a > 0, $"mmap: {a}");
        var getArg = Bytes(new ioctl_gntdev_get_offset_for_vaddr { vaddr = (ulong)a + Page / 2 });
        Assert.Equal(0, P0.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR, getArg));
        Assert.Equal(off, Read<ioctl_gntdev_get_offset_for_vaddr>(getArg).offset);
        // each thread owns byte t of every page
        byte v = (byte)(i + 1);
        GuestMemory.AsSpan(a, n * Page)[t] = v;
        int page = (t * 2) % Pages;
        Assert.Equal(v, GuestMemory.AsSpan(shared + (long)page * Page, Page)[t]);
        if (i % 2 == 0)
        {
            Assert.Equal(0, UnmapGrantRef(P0, fd, off, (uint)n));      // before munmap: the mmap keeps it
            Assert.Equal(0, P0.Munmap(a, n * (long)Page));
        }
        else
        {
            Assert.Equal(0, P0.Munmap(a, n * (long)Page));
            Assert.Equal(0, UnmapGrantRef(P0, fd, off, (uint)n));
        }
    }

    private void AssertGrantsIdle(uint[] refs)
    {
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        Assert.Equal(0, P0.MappingCount);
        foreach (var r in refs) Assert.Equal(Gtf.permit_access, Entry(DomU, r).Flags);
    }

    [Fact]
    public void GD01_GD02_GD03_Race_ThreadsOnOneFile()
    {
        var s = Share();
        int gd = Open(P0, "/dev/xen/gntdev");
        RunThreads(4, t =>
        {
            for (int i = 0; i < 1000; i++) Cycle(gd, s.Refs, t, i, s.Addr);
        });
        AssertGrantsIdle(s.Refs);
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, 0, 0));   // the list is empty again
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD01_GD02_GD03_Race_ThreadsOnSeparateFiles()
    {
        var s = Share();
        RunThreads(4, t =>
        {
            int gd = P0.Open("/dev/xen/gntdev", Posix.O_RDWR);
            Assert.True(gd >= 0, gd.ToString());
            for (int i = 0; i < 1000; i++)
            {
                Cycle(gd, s.Refs, t, i, s.Addr);
                if (i % 50 == 49)
                {
                    Assert.Equal(0, P0.Close(gd));                       // reopen now and then
                    gd = P0.Open("/dev/xen/gntdev", Posix.O_RDWR);
                    Assert.True(gd >= 0, gd.ToString());
                }
            }
            Assert.Equal(0, P0.Close(gd));
        });
        AssertGrantsIdle(s.Refs);
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD02_GD03_Race_TwoThreadsMmapOneMap_ExactlyOneWins()
    {
        var s = Share();
        int gd = Open(P0, "/dev/xen/gntdev");
        using var barrier = new Barrier(2);
        var results = new long[2];
        ulong off = 0;
        RunThreads(2, t =>
        {
            for (int i = 0; i < 500; i++)
            {
                if (t == 0) off = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0], s.Refs[1]);
                barrier.SignalAndWait();
                results[t] = P0.Mmap(gd, (long)off, 2 * Page, RW, Posix.MAP_SHARED);
                barrier.SignalAndWait();
                long win = results[0] > 0 ? results[0] : results[1];
                long lose = results[0] > 0 ? results[1] : results[0];
                Assert.True(win > 0, $"no mmap won: {results[0]} {results[1]}");
                Assert.Equal(-Errno.EINVAL, lose);
                barrier.SignalAndWait();
                // munmap and UNMAP_GRANT_REF race; both succeed, the grants go when both are done
                if (t == 0) Assert.Equal(0, P0.Munmap(win, 2 * Page));
                else Assert.Equal(0, UnmapGrantRef(P0, gd, off, 2));
                barrier.SignalAndWait();
            }
        });
        AssertGrantsIdle(s.Refs);
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD09_Race_CloseWhileAnotherThreadMapsAndMmaps()
    {
        var s = Share();
        int sawEbadf = 0, sawMapped = 0;
        for (int iter = 0; iter < 400; iter++)
        {
            int gd = Open(P0, "/dev/xen/gntdev");
            int progress = 0;
            int waitFor = iter % 4;
            var mapped = new List<long>();
            var workerErrors = new ConcurrentQueue<Exception>();
            var worker = new Thread(() =>
            {
                try
                {
                    for (int k = 0; k < 64; k++)
                    {
                        var arg = MapGrantRefArg(DomU.Id, s.Refs[k % Pages], s.Refs[(k + 1) % Pages]);
                        int rc = MapRc(P0, gd, arg);
                        Volatile.Write(ref progress, k + 1);
                        if (rc == -Errno.EBADF) { Interlocked.Increment(ref sawEbadf); return; }
                        Assert.Equal(0, rc);
                        ulong off = MemoryMarshal.Read<ulong>(arg.AsSpan(8));
                        long a = P0.Mmap(gd, (long)off, 2 * Page, (k & 1) == 0 ? RW : Posix.PROT_READ, Posix.MAP_SHARED);
                        if (a == -Errno.EBADF) { Interlocked.Increment(ref sawEbadf); return; }
                        Assert.True(a > 0, $"mmap: {a}");
                        Interlocked.Increment(ref sawMapped);
                        _ = GuestMemory.AsSpan(a, 2 * Page)[Page];
                        if ((k & 3) == 0) mapped.Add(a);
                        else Assert.Equal(0, P0.Munmap(a, 2 * Page));
                        if ((k & 1) == 1)
                        {
                            int u = UnmapGrantRef(P0, gd, off, 2);
                            if (u == -Errno.EBADF) { Interlocked.Increment(ref sawEbadf); return; }
                            Assert.Equal(0, u);
                        }
                    }
                }
                catch (Exception e) { workerErrors.Enqueue(e); }
            });
            worker.Start();
            var spin = new SpinWait();
            while (Volatile.Read(ref progress) < waitFor && worker.IsAlive) spin.SpinOnce();
            Assert.Equal(0, P0.Close(gd));
            Assert.True(worker.Join(JoinTimeout), "worker did not finish");
            Assert.Empty(workerErrors);
            // the mmaps kept beyond the close still work until munmap
            foreach (var a in mapped)
            {
                _ = GuestMemory.AsSpan(a, 2 * Page)[0];
                Assert.Equal(0, P0.Munmap(a, 2 * Page));
            }
            Assert.Equal(0, P0.MappingCount);
            Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        }
        Assert.True(sawMapped > 0);
        Assert.True(sawEbadf > 0);
        AssertGrantsIdle(s.Refs);
        Unshare(s);
        AssertNoLeaks();
    }
}
