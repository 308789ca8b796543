using XenShare.Abi;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

/// <summary>
/// EW04, D01, D02, EX08, EX13, EI08: release against wait against close on different threads, many
/// times over: no lost wake-up (a long wait never times out), no leak. XENSHARE_STRESS=1 runs many more
/// iterations.
/// </summary>
public sealed class DmaBufRaceTests : DmaBufTest
{
    private static readonly bool Stress = Environment.GetEnvironmentVariable("XENSHARE_STRESS") == "1";
    private static int Iterations(int normal) => Stress ? normal * 25 : normal;
    private const uint LongWaitMs = 30_000;

    /// <summary>Runs each body on its own thread, with a barrier they share; the first failure cancels
    /// the barrier so nobody hangs, and the returned task faults with it.</summary>
    private static Task RunThreads(Func<Barrier, CancellationToken, Action>[] bodies)
    {
        var cts = new CancellationTokenSource();
        var barrier = new Barrier(bodies.Length);
        var tasks = new List<Task>();
        foreach (var make in bodies)
        {
            var body = make(barrier, cts.Token);
            var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var t = new Thread(() =>
            {
                try { body(); tcs.SetResult(); }
                catch (Exception e) { cts.Cancel(); tcs.SetException(e); }
            }) { IsBackground = true, Name = "race" };
            t.Start();
            tasks.Add(tcs.Task);
        }
        return Task.WhenAll(tasks).ContinueWith(t =>
        {
            barrier.Dispose();
            cts.Dispose();
            var real = t.Exception?.Flatten().InnerExceptions.Where(e => e is not OperationCanceledException).ToList();
            if (real is { Count: > 0 }) throw new AggregateException(real);
            if (t.IsFaulted) throw t.Exception!;
        }, TaskScheduler.Default);
    }

    private static void AssertWaitResult(int rc, string what) =>
        Assert.True(rc == 0 || rc == -Errno.ENOENT, $"{what}: wait returned {rc} (lost wake-up?)");

    [Fact]
    public async Task EW04_D02_ReleaseVsWait_NoLostWakeup()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int n = Iterations(4000);
        int fd = -1, zeros = 0, enoents = 0;
        await RunThreads(
        [
            (b, ct) => () =>   // exporter + closer
            {
                for (int i = 0; i < n; i++)
                {
                    fd = ExportOk(gd, g);
                    b.SignalAndWait(ct);
                    Assert.Equal(0, P0.Close(fd));
                    b.SignalAndWait(ct);
                }
            },
            (b, ct) => () =>   // waiter
            {
                for (int i = 0; i < n; i++)
                {
                    b.SignalAndWait(ct);
                    int rc = Wait(P0, gd, fd, LongWaitMs);
                    AssertWaitResult(rc, $"iteration {i}");
                    if (rc == 0) { zeros++; AssertNotMapped(g); }   // D02: unmapped by the time it returns
                    else enoents++;
                    b.SignalAndWait(ct);
                }
            },
        ]).WaitAsync(TimeSpan.FromMinutes(Stress ? 30 : 5));
        Assert.Equal(n, zeros + enoents);
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public async Task EW04_D01_TwoWaitersVsImporterPutVsFdClose()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int n = Iterations(1500);
        int fd = -1;
        DmaBufObject? buf = null;
        DmaBufAttachment? att = null;
        var dev = new DmaDevice(Dom0.Kernel, "gpu", DmaTranslation.Iommu);
        Func<Barrier, CancellationToken, Action> waiter = (b, ct) => () =>
        {
            for (int i = 0; i < n; i++)
            {
                b.SignalAndWait(ct);
                AssertWaitResult(Wait(P0, gd, fd, LongWaitMs), $"iteration {i}");
                b.SignalAndWait(ct);
            }
        };
        await RunThreads(
        [
            (b, ct) => () =>   // exporter, then closes the fd
            {
                for (int i = 0; i < n; i++)
                {
                    fd = ExportOk(gd, g);
                    buf = GetBuf(P0, fd);
                    att = buf.Attach(dev, out _);
                    Assert.NotNull(buf.MapAttachment(att!, DmaDirection.ToDevice, out _));
                    b.SignalAndWait(ct);
                    Assert.Equal(0, P0.Close(fd));
                    b.SignalAndWait(ct);
                }
            },
            (b, ct) => () =>   // importer lets go
            {
                for (int i = 0; i < n; i++)
                {
                    b.SignalAndWait(ct);
                    buf!.Detach(att!);
                    buf.Put();
                    b.SignalAndWait(ct);
                }
            },
            waiter,
            waiter,
        ]).WaitAsync(TimeSpan.FromMinutes(Stress ? 30 : 5));
        Assert.Equal(0, dev.IommuMappedPages);
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public async Task EW04_EI08_WaitVsImpReleaseVsFdCloseVsGntdevClose()
    {
        var g = Share(2);
        int n = Iterations(2000);
        int gd = -1, gdImp = Open(P0, GntDev), fd = -1;
        await RunThreads(
        [
            (b, ct) => () =>
            {
                for (int i = 0; i < n; i++)
                {
                    gd = Open(P0, GntDev);
                    fd = ExportOk(gd, g);
                    Assert.Equal(0, Import(P0, gdImp, fd, 2, DomU.Id.Value, out _));
                    b.SignalAndWait(ct);
                    Assert.Equal(0, P0.Close(fd));
                    b.SignalAndWait(ct);
                    Assert.Equal(0, P0.Close(gd));   // after the wait: the waiter used it
                }
            },
            (b, ct) => () =>
            {
                for (int i = 0; i < n; i++)
                {
                    b.SignalAndWait(ct);
                    Assert.Equal(0, ImpRelease(P0, gdImp, fd));
                    b.SignalAndWait(ct);
                }
            },
            (b, ct) => () =>
            {
                for (int i = 0; i < n; i++)
                {
                    b.SignalAndWait(ct);
                    AssertWaitResult(Wait(P0, gd, fd, LongWaitMs), $"iteration {i}");
                    b.SignalAndWait(ct);
                }
            },
        ]).WaitAsync(TimeSpan.FromMinutes(Stress ? 30 : 5));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gdImp));
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public async Task EX13_EW01_ConcurrentExportReleaseOnTwoGntdevFiles()
    {
        var ga = Share(3);
        var gb = Share(3);
        int gdA = Open(P0, GntDev), gdB = Open(P0, GntDev);
        int n = Iterations(4000);
        Func<Barrier, CancellationToken, Action> worker(int gd, Granter g, uint flags) => (_, _) => () =>
        {
            for (int i = 0; i < n; i++)
            {
                int fd = ExportOk(gd, g, (uint)(i % 2 == 0 ? 0 : flags));
                Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
                int dup = P0.Dup(fd);
                Assert.Equal(0, P0.Close(fd));
                Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
                Assert.Equal(0, P0.Close(dup));
                Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, LongWaitMs));
            }
        };
        await RunThreads([worker(gdA, ga, GntDevIoctl.GNTDEV_DMA_FLAG_WC), worker(gdB, gb, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT)])
            .WaitAsync(TimeSpan.FromMinutes(Stress ? 30 : 5));
        AssertNotMapped(ga);
        AssertNotMapped(gb);
        Assert.Equal(0, P0.Close(gdA));
        Assert.Equal(0, P0.Close(gdB));
        ga.Close();
        gb.Close();
        AssertNoLeaks();
    }

    [Fact]
    public async Task EX08_CloseRacingTheInstall_NeverSeesHalfBuiltBuffer()
    {
        // A second thread hammers the fd number the export is about to get: close and ioctl on it may
        // see EBADF or a complete dma-buf, never anything else; every buffer is released exactly once.
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int n = Iterations(4000);
        int next = P0.Dup(gd);
        Assert.Equal(0, P0.Close(next));
        int closedByOther = 0;
        await RunThreads(
        [
            (b, ct) => () =>
            {
                for (int i = 0; i < n; i++)
                {
                    b.SignalAndWait(ct);
                    Assert.Equal(0, Export(P0, gd, 0, DomU.Id.Value, g.Refs, out int fd));
                    Assert.Equal(next, fd);
                    b.SignalAndWait(ct);
                    int rc = P0.Close(fd);
                    Assert.True(rc == 0 || rc == -Errno.EBADF, $"close: {rc}");
                    Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, LongWaitMs));
                }
            },
            (b, ct) => () =>
            {
                for (int i = 0; i < n; i++)
                {
                    b.SignalAndWait(ct);
                    for (int k = 0; k < 50; k++)
                    {
                        long size = P0.Lseek(next, 0, Posix.SEEK_END);
                        Assert.True(size == -Errno.EBADF || size == 4096, $"lseek: {size}");
                        if (size == 4096)
                        {
                            int rc = P0.Close(next);
                            Assert.True(rc == 0 || rc == -Errno.EBADF, $"close: {rc}");
                            if (rc == 0) closedByOther++;
                            break;
                        }
                    }
                    b.SignalAndWait(ct);
                }
            },
        ]).WaitAsync(TimeSpan.FromMinutes(Stress ? 30 : 5));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
        _ = closedByOther;
    }

    [Fact]
    public async Task EI08_ConcurrentImportAndReleaseOnOneGntdevFile()
    {
        int gd = Open(P0, GntDev);
        var (a, _) = HeapBuffer(2);
        var (b2, _) = HeapBuffer(3);
        int n = Iterations(4000);
        Func<Barrier, CancellationToken, Action> worker(int fd, int count, bool check) => (_, _) => () =>
        {
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(0, Import(P0, gd, fd, count, DomU.Id.Value, out var refs));
                if (check) Assert.All(refs, r => Assert.Equal(Gtf.permit_access, Entry(Dom0, r).Flags));
                Assert.Equal(0, ImpRelease(P0, gd, fd));
            }
        };
        Func<Barrier, CancellationToken, Action> sameKey = (_, _) => () =>
        {
            // Two threads import and release the same number: each release drops one import.
            for (int i = 0; i < n; i++)
            {
                Assert.Equal(0, Import(P0, gd, a, 2, DomU.Id.Value, out _));
                Assert.Equal(0, ImpRelease(P0, gd, a));
            }
        };
        await RunThreads([worker(a, 2, false), worker(b2, 3, true), sameKey]).WaitAsync(TimeSpan.FromMinutes(Stress ? 30 : 5));
        Assert.Equal(0, Dom0.Kernel.GrantRefsInUse);
        Assert.Equal(-Errno.ENOENT, ImpRelease(P0, gd, a));
        Assert.Equal(0, P0.Close(a));
        Assert.Equal(0, P0.Close(b2));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }
}
