using System.Diagnostics;
using XenShare.Abi;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

/// <summary>EW01-EW06, D01, D02: IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED.</summary>
public sealed class WaitReleasedTests : DmaBufTest
{
    [Fact]
    public void EW01_NeverExportedIsEnoent()
    {
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, 0, 0));
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, 5, 1000));
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, gd, 1000));   // an open fd that is no export
        var (heap, _) = HeapBuffer(1);
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, heap, 1000));  // a dma-buf, but not exported here
        Assert.Equal(0, P0.Close(heap));
        Assert.Equal(0, P0.Close(gd));
    }

    [Fact]
    public void EW01_ExportedOnAnotherGntdevFileIsEnoent()
    {
        var g = Share(1);
        int gd1 = Open(P0, GntDev);
        int gd2 = Open(P0, GntDev);
        int fd = ExportOk(gd1, g);
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd2, fd, 1000));
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd1, fd, 0));
        int gdOther = Open(PU, GntDev);
        Assert.Equal(-Errno.ENOENT, Wait(PU, gdOther, fd, 1000));   // another domain's gntdev
        Assert.Equal(0, PU.Close(gdOther));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd1));
        Assert.Equal(0, P0.Close(gd2));
        g.Close();
    }

    [Fact]
    public async Task EW01_KeyIsNotRevalidated_ReusedNumberFindsNewestFirst()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fdA = ExportOk(gd, g);
        var a = GetBuf(P0, fdA);                       // A lives on without its fd
        Assert.Equal(0, P0.Close(fdA));
        int fdB = ExportOk(gd, g);
        Assert.Equal(fdA, fdB);                        // the number is reused
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fdB, 0));
        var (th, waiter) = StartWaiter(() => Wait(P0, gd, fdB, 60_000));
        WaitUntilBlocked(th);
        Assert.Equal(0, P0.Close(fdB));                // releases B, the newest: the waiter wakes
        Assert.Equal(0, await waiter.WaitAsync(Generous));   // it found the newest buffer (B)
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fdA, 0));   // now the key finds A
        a.Put();
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fdA, 0));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public async Task EW02_CallerMayCloseFdBeforeWaiting()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var buf = GetBuf(P0, fd);
        var iommu = new DmaDevice(Dom0.Kernel, "gpu", DmaTranslation.Iommu);
        var att = buf.Attach(iommu, out _)!;
        Assert.Equal(0, P0.Close(fd));                   // libxenbe closes, then waits
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
        var (th, waiter) = StartWaiter(() => Wait(P0, gd, fd, 60_000));
        WaitUntilBlocked(th);
        Assert.False(waiter.IsCompleted);
        buf.Detach(att);
        buf.Put();                                        // the importer lets go on this thread
        Assert.Equal(0, await waiter.WaitAsync(Generous));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EW02_CloseWithoutOtherHolderThenWaitIsEnoent()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 60_000));   // released already: no waiting
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EW03_TimeoutZeroIsImmediateEtimedout()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < 100; i++) Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(5), $"100 zero waits took {sw.Elapsed}");
        AssertMappedByExport(g);                            // the wait did nothing to the buffer
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 0));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EW03_NotReleasedWithinTimeoutIsEtimedout()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var sw = Stopwatch.StartNew();
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 150));
        Assert.True(sw.ElapsedMilliseconds >= 140, $"returned after {sw.ElapsedMilliseconds} ms");
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    public static TheoryData<string> Releasers => new() { "close-fd", "importer-put", "imp-release" };

    [Theory]
    [MemberData(nameof(Releasers))]
    public async Task EW04_D02_ReleasedDuringWaitReturnsZeroPromptly_GrantsAlreadyUnmapped(string how)
    {
        var g = Share(3);
        int gd = Open(P0, GntDev);
        int gd2 = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        int unpop = Dom0.Kernel.Unpopulated.FreeCount;
        DmaBufObject? buf = null;
        DmaBufAttachment? att = null;
        if (how == "importer-put")
        {
            buf = GetBuf(P0, fd);
            att = buf.Attach(new DmaDevice(Dom0.Kernel, "gpu", DmaTranslation.Iommu), out _);
            Assert.Equal(0, P0.Close(fd));
        }
        if (how == "imp-release")
        {
            Assert.Equal(0, Import(P0, gd2, fd, 3, DomU.Id.Value, out _));
            Assert.Equal(0, P0.Close(fd));
        }
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));   // warm-up, and still alive
        ushort[]? flagsAtWake = null;
        int unpopAtWake = -1;
        var (th, waiter) = StartWaiter(() =>
        {
            int rc = Wait(P0, gd, fd, 60_000);
            flagsAtWake = Flags(g);                               // D02: observed right when the wait returns
            unpopAtWake = Dom0.Kernel.Unpopulated.FreeCount;
            return rc;
        });
        WaitUntilBlocked(th);
        var sw = Stopwatch.StartNew();
        var releaser = Task.Run(() =>
        {
            switch (how)
            {
                case "close-fd": Assert.Equal(0, P0.Close(fd)); break;
                case "importer-put": buf!.Detach(att!); buf.Put(); break;
                default: Assert.Equal(0, ImpRelease(P0, gd2, fd)); break;
            }
        });
        await releaser.WaitAsync(Generous);
        Assert.Equal(0, await waiter.WaitAsync(Generous));
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"woken after {sw.Elapsed}");
        Assert.All(flagsAtWake!, f => Assert.Equal(Gtf.permit_access, f));
        Assert.Equal(unpop + 3, unpopAtWake);
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 0));       // EW05
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(gd2));
        g.Close();
    }

    [Fact]
    public void EW05_AfterReleaseNewWaitIsEnoent()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var buf = GetBuf(P0, fd);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
        buf.Put();
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 0));
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 60_000));
        // A new export that reuses the number is a new key.
        int fd2 = ExportOk(gd, g);
        Assert.Equal(fd, fd2);
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd2, 0));
        Assert.Equal(0, P0.Close(fd2));
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd2, 0));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public async Task EW06_WaitIsNotCutShortByUnrelatedActivity()
    {
        // The emulator has no signals; what can reach a waiter is other activity on the same gntdev file
        // and process: none of it ends the wait early (no EINTR, no spurious 0).
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
        var sw = Stopwatch.StartNew();
        var (th, waiter) = StartWaiter(() => Wait(P0, gd, fd, 300));
        WaitUntilBlocked(th);
        for (int i = 0; i < 5; i++)
        {
            int other = ExportOk(gd, g);
            Assert.Equal(0, P0.Close(other));          // other buffers of the same file are released
        }
        Assert.Equal(-Errno.ETIMEDOUT, await waiter.WaitAsync(Generous));
        Assert.True(sw.ElapsedMilliseconds >= 290, $"returned after {sw.ElapsedMilliseconds} ms");
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public async Task D01_TwoWaitersAreBothWoken()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var buf = GetBuf(P0, fd);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
        var (t1, w1) = StartWaiter(() => Wait(P0, gd, fd, 60_000));
        var (t2, w2) = StartWaiter(() => Wait(P0, gd, fd, 60_000));
        WaitUntilBlocked(t1);
        WaitUntilBlocked(t2);
        buf.Put();
        Assert.Equal(0, await w1.WaitAsync(Generous));
        Assert.Equal(0, await w2.WaitAsync(Generous));   // Linux: the second one times out
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public async Task D01_ManyWaitersWithDifferentTimeoutsAllWoken()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
        var waiters = Enumerable.Range(0, 6).Select(i => StartWaiter(() => Wait(P0, gd, fd, (uint)(30_000 + i * 1000)))).ToArray();
        foreach (var (t, _) in waiters) WaitUntilBlocked(t);
        Assert.Equal(0, P0.Close(fd));
        foreach (var (_, w) in waiters) Assert.Equal(0, await w.WaitAsync(Generous));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public async Task D02_WaitReturnsAfterWcBackingFreed()
    {
        var g = Share(4);
        int gd = Open(P0, GntDev);
        int ram = Dom0.Kernel.Ram.FreeCount;
        int fd = ExportOk(gd, g, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT);
        var buf = GetBuf(P0, fd);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(ram - 4, Dom0.Kernel.Ram.FreeCount);
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
        int ramAtWake = -1, foreignAtWake = -1, maptrackAtWake = -1;
        var (th, waiter) = StartWaiter(() =>
        {
            int rc = Wait(P0, gd, fd, 60_000);
            ramAtWake = Dom0.Kernel.Ram.FreeCount;
            foreignAtWake = Dom0.Domain.P2M.CountForeign();
            maptrackAtWake = Dom0.Domain.MapTrackInUse;
            return rc;
        });
        WaitUntilBlocked(th);
        await Task.Run(buf.Put).WaitAsync(Generous);
        Assert.Equal(0, await waiter.WaitAsync(Generous));
        Assert.Equal(ram, ramAtWake);
        Assert.Equal(0, foreignAtWake);
        Assert.Equal(0, maptrackAtWake);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }
}
