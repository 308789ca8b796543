using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

/// <summary>DB01-DB05: what every dma-buf file does, shown with a test exporter and the system heap.</summary>
public sealed class DmaBufCoreTests : DmaBufTest
{
    private int RamFree => Dom0.Kernel.Ram.FreeCount;

    [Fact]
    public void DB01_FdKeepsBufferAlive_ReleaseRunsOnceAfterLastClose()
    {
        var x = new TestExporter(Dom0.Kernel, 2);
        int fd = x.Install(P0, out var buf);
        int dup = P0.Dup(fd);
        Assert.True(dup >= 0);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, x.Releases);
        Assert.False(buf!.Released);
        Assert.Equal(0, P0.Close(dup));
        Assert.Equal(1, x.Releases);
        Assert.True(buf.Released);
        Assert.Equal(-Errno.EBADF, P0.Close(dup));
        Assert.Equal(1, x.Releases);
    }

    [Fact]
    public async Task DB01_WhenReleased_CompletesAtTheLastReference_NotBefore()
    {
        int fd = SystemHeap.Allocate(P0, 2, contiguous: true);
        Assert.True(fd >= 0, "heap: " + fd);
        var buf = GetBuf(P0, fd);   // dma_buf_get: an in-kernel reference
        Task released = buf.WhenReleased;
        Assert.Equal(0, P0.Close(fd));
        Assert.False(released.IsCompleted);   // the kernel reference still holds it
        buf.Put();
        await released.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(buf.Released);
    }

    [Fact]
    public async Task DB01_WhenReleased_AskedWhileTheLastReferenceGoes_CompletesEveryTime()
    {
        // WhenReleased creates its completion source on first use; a release on another thread at the same
        // moment must still complete it (and never before the exporter's release ran).
        for (int i = 0; i < 500; i++)
        {
            var x = new TestExporter(Dom0.Kernel, 1);
            int fd = x.Install(P0, out var buf);
            using var go = new Barrier(2);
            var closer = Task.Factory.StartNew(() =>
            {
                go.SignalAndWait(TimeSpan.FromSeconds(30));
                Assert.Equal(0, P0.Close(fd));
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            go.SignalAndWait(TimeSpan.FromSeconds(30));
            Task released = buf!.WhenReleased;
            await released.WaitAsync(TimeSpan.FromSeconds(30));
            Assert.Equal(1, x.Releases);
            await closer.WaitAsync(TimeSpan.FromSeconds(30));
        }
    }

    [Fact]
    public void DB01_MmapKeepsBufferAlive()
    {
        int before = RamFree;
        var (fd, _) = HeapBuffer(2);
        long va = P0.Mmap(fd, 0, 2 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(va > 0);
        Assert.Equal(0, P0.Close(fd));
        GuestMemory.AsSpan(va, 8192)[5000] = 7;   // still usable: the mapping holds the buffer
        Assert.Equal(7, GuestMemory.AsSpan(va, 8192)[5000]);
        Assert.Equal(before - 2, RamFree);
        Assert.Equal(0, P0.Munmap(va, 2 * 4096));
        Assert.Equal(before, RamFree);
    }

    [Fact]
    public void DB01_InKernelGetAndAttachmentKeepBufferAlive()
    {
        var x = new TestExporter(Dom0.Kernel, 2);
        int fd = x.Install(P0, out _);
        var buf = GetBuf(P0, fd);
        var dev = new DmaDevice(Dom0.Kernel, "iommu-dev", DmaTranslation.Iommu);
        var att = buf.Attach(dev, out int e)!;
        Assert.Equal(0, e);
        var t = buf.MapAttachment(att, DmaDirection.Bidirectional, out e)!;
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, x.Releases);
        Assert.Equal(1, buf.RefCount);
        buf.UnmapAttachment(att, t, DmaDirection.Bidirectional);
        buf.Detach(att);
        Assert.Equal(0, x.Releases);
        buf.Put();
        Assert.Equal(1, x.Releases);
        Assert.Equal((1, 1, 1, 1), (x.Attaches, x.Maps, x.Unmaps, x.Detaches));
        Assert.Equal(0, dev.IommuMappedPages);
    }

    [Fact]
    public void DB02_Lseek()
    {
        var (fd, _) = HeapBuffer(3);
        Assert.Equal(0, P0.Lseek(fd, 0, Posix.SEEK_SET));
        Assert.Equal(3 * 4096, P0.Lseek(fd, 0, Posix.SEEK_END));
        Assert.Equal(-Errno.EINVAL, P0.Lseek(fd, 0, Posix.SEEK_CUR));
        Assert.Equal(-Errno.EINVAL, P0.Lseek(fd, 1, Posix.SEEK_SET));
        Assert.Equal(-Errno.EINVAL, P0.Lseek(fd, 4096, Posix.SEEK_SET));
        Assert.Equal(-Errno.EINVAL, P0.Lseek(fd, -1, Posix.SEEK_END));
        Assert.Equal(-Errno.EINVAL, P0.Lseek(fd, 0, 3));   // SEEK_DATA
        Assert.Equal(-Errno.EINVAL, P0.Lseek(fd, 0, 99));
        Assert.Equal(0, P0.Close(fd));
    }

    [Fact]
    public void DB03_Sync_FlagsValidation()
    {
        var x = new TestExporter(Dom0.Kernel, 1);
        int fd = x.Install(P0, out _);
        Assert.Equal(-Errno.EINVAL, Sync(P0, fd, 8));
        Assert.Equal(-Errno.EINVAL, Sync(P0, fd, 1UL << 63));
        Assert.Equal(-Errno.EINVAL, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_READ | 16));
        Assert.Equal(-Errno.EINVAL, Sync(P0, fd, 0));                                  // RW empty (START)
        Assert.Equal(-Errno.EINVAL, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_END));       // RW empty (END)
        Assert.Equal(0, x.Begins + x.Ends);
        Assert.Equal(0, P0.Close(fd));
    }

    [Fact]
    public void DB03_Sync_StartAndEndCallCpuAccessHooks()
    {
        var x = new TestExporter(Dom0.Kernel, 1);
        int fd = x.Install(P0, out _);
        Assert.Equal(0, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_START | DmaBufIoctl.DMA_BUF_SYNC_READ));
        Assert.Equal((1, 0), (x.Begins, x.Ends));
        Assert.Equal(0, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_END | DmaBufIoctl.DMA_BUF_SYNC_READ));
        Assert.Equal((1, 1), (x.Begins, x.Ends));
        Assert.Equal(0, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_START | DmaBufIoctl.DMA_BUF_SYNC_WRITE));
        Assert.Equal(0, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_END | DmaBufIoctl.DMA_BUF_SYNC_RW));
        Assert.Equal((2, 2), (x.Begins, x.Ends));
        Assert.Equal([DmaDirection.FromDevice, DmaDirection.FromDevice, DmaDirection.ToDevice, DmaDirection.Bidirectional], x.CpuDirections);
        Assert.Equal(0, P0.Close(fd));
    }

    [Fact]
    public void DB03_Sync_WithoutHooksIsZero()
    {
        var x = new TestExporter(Dom0.Kernel, 1) { HasCpuAccess = false };
        int fd = x.Install(P0, out _);
        Assert.Equal(0, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_START | DmaBufIoctl.DMA_BUF_SYNC_RW));
        Assert.Equal(0, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_END | DmaBufIoctl.DMA_BUF_SYNC_RW));
        Assert.Equal(0, P0.Close(fd));
    }

    [Fact]
    public void DB03_UnknownIoctlIsEnotty()
    {
        var (fd, _) = HeapBuffer(1);
        var arg = new byte[64];
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(fd, Ioc.Encode(Ioc.Write, 'b', 9, 8), arg));
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, arg));
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(fd, 0, arg));
        Assert.Equal(0, P0.Close(fd));
    }

    [Fact]
    public void DB04_MmapWithoutExporterMmapIsEinval()
    {
        var x = new TestExporter(Dom0.Kernel, 1);
        int fd = x.Install(P0, out _);
        Assert.Equal(-Errno.EINVAL, P0.Mmap(fd, 0, 4096, Posix.PROT_READ, Posix.MAP_SHARED));
        Assert.Equal(0, P0.MappingCount);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(1, x.Releases);   // the failed mmap took no lasting reference
    }

    [Fact]
    public void DB05_DirectDeviceCoalescesContiguousPages()
    {
        var x = new TestExporter(Dom0.Kernel, 4, contiguous: true);
        int fd = x.Install(P0, out var buf);
        var dev = new DmaDevice(Dom0.Kernel, "direct");
        var att = buf!.Attach(dev, out _)!;
        var t = buf.MapAttachment(att, DmaDirection.ToDevice, out int e)!;
        Assert.Equal(0, e);
        var seg = Assert.Single(t.Segments);
        // dom0 is direct-mapped: the device sees the machine address of its contiguous RAM (DM03).
        Assert.True(Dom0.Domain.P2M.TryGet(x.Frames[0], out var mfn, out _));
        Assert.Equal(mfn.Value << 12, seg.DmaAddress);
        Assert.Equal(4 * 4096, seg.Length);
        Assert.Equal(0, seg.Offset);
        buf.UnmapAttachment(att, t, DmaDirection.ToDevice);
        buf.Detach(att);
        Assert.Equal(0, P0.Close(fd));
    }

    [Fact]
    public void DB05_ScatteredPagesGiveOneSegmentPerRun()
    {
        // Frames 0,1 contiguous, then a gap, then 3: two segments on a direct device.
        var ram = Dom0.Kernel.Ram;
        Assert.True(ram.TryAllocateContiguous(4, out var first));
        ram.Free(new GuestFrame(first.Value + 2));
        var frames = new[] { first, new GuestFrame(first.Value + 1), new GuestFrame(first.Value + 3) };
        var dev = new DmaDevice(Dom0.Kernel, "direct");
        var t = dev.Map(frames)!;
        Assert.Equal(2, t.Segments.Count);
        Assert.Equal(2 * 4096, t.Segments[0].Length);
        Assert.Equal(4096, t.Segments[1].Length);
        Assert.Equal(3 * 4096, t.TotalLength);
        var iommu = new DmaDevice(Dom0.Kernel, "iommu", DmaTranslation.Iommu);
        var ti = iommu.Map(frames)!;
        Assert.Single(ti.Segments);
        // Through the IOVA the device reaches the third page's machine frame (dom0: machine addresses, DM03).
        Assert.True(iommu.TryResolveBus(ti.Segments[0].DmaAddress + 2 * 4096, out var m));
        Assert.True(Dom0.Domain.P2M.TryGet(frames[2], out var expected, out _));
        Assert.Equal(expected, m);
        Assert.False(iommu.TryTranslate(ti.Segments[0].DmaAddress, out _));   // no guest-physical address
        dev.Unmap(t);
        iommu.Unmap(ti);
        Assert.Equal(0, iommu.IommuMappedPages);
        foreach (var f in frames) ram.Free(f);
    }

    [Fact]
    public void DB05_AttachRefusalReturnedAndNothingAttached()
    {
        var x = new TestExporter(Dom0.Kernel, 1) { AttachErrno = -Errno.ENODEV };
        int fd = x.Install(P0, out var buf);
        var att = buf!.Attach(new DmaDevice(Dom0.Kernel, "d"), out int e);
        Assert.Null(att);
        Assert.Equal(-Errno.ENODEV, e);
        Assert.Equal(0, buf.AttachmentCount);
        Assert.Equal(0, P0.Close(fd));
    }

    [Theory]
    [InlineData("map")]
    [InlineData("unmap")]
    [InlineData("release")]
    public void DB05_ExportWithoutMandatoryOpIsEinval(string missing)
    {
        var x = new TestExporter(Dom0.Kernel, 1)
        {
            WithMap = missing != "map",
            WithUnmap = missing != "unmap",
            WithRelease = missing != "release",
        };
        Assert.Equal(-Errno.EINVAL, x.Install(P0, out var buf));
        Assert.Null(buf);
        Assert.Equal(0, P0.OpenFdCount);
        AssertNoLeaks();
    }

    [Fact]
    public void DB05_ExportWithOnlyMandatoryOpsWorks()
    {
        var frames = new GuestFrame[1];
        Assert.True(Dom0.Kernel.TryAllocPages(frames, zero: true));
        var ops = new DmaBufOps
        {
            Map = (DmaBufAttachment a, DmaDirection d, out int e) => { e = 0; return a.Device.Map(frames); },
            Unmap = (a, t, d) => a.Device.Unmap(t),
            Release = _ => Dom0.Kernel.FreePage(frames[0]),
        };
        var buf = DmaBufObject.Export(Dom0.Kernel, ops, 4096, null, out int errno)!;
        Assert.Equal(0, errno);
        var att = buf.Attach(new DmaDevice(Dom0.Kernel, "d"), out errno)!;   // no attach op: accepted
        Assert.Equal(0, errno);
        var t = buf.MapAttachment(att, DmaDirection.FromDevice, out errno)!;
        Assert.Single(t.Segments);
        buf.UnmapAttachment(att, t, DmaDirection.FromDevice);
        buf.Detach(att);                                                         // no detach op: fine
        buf.Put();
        Assert.True(buf.Released);
    }
}
