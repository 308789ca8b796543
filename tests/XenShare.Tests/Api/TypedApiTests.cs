using XenShare.Abi;
using XenShare.Api;
using XenShare.Emulation.Kernel.DmaBuf;
using XenShare.Tests.Emulation;

namespace XenShare.Tests.Api;

public sealed class TypedApiTests : EmulatorTest
{
    [Fact]
    public void ShareMapCopyAndNotifyThroughTheTypedApi()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 2);
        pages.Memory.Span[10] = 1;
        using var gnt = GrantDevice.Open(P0);
        using (var map = gnt.Map(DomU.Id, [pages.Refs[0], pages.Refs[1]]))
        {
            Assert.Equal(1, map.ReadOnlyMemory.Span[10]);
            map.Memory.Span[4097] = 2;
            Assert.Equal(2, pages.Memory.Span[4097]);
        }
        using var local = ProcessBuffer.Allocate(P0, 4096);
        Span<short> st = stackalloc short[1];
        gnt.Copy([new GrantCopySegment(GrantCopyOperand.Foreign(DomU.Id, pages.Refs[1], 1), GrantCopyOperand.Local(local.Address), 4096 - 1)], st);
        Assert.Equal(GntSt.okay, st[0]);
        Assert.Equal(2, local.Memory.Span[0]);   // byte 1 of the second granted page lands at local[0]
    }

    [Fact]
    public void ReadOnlyMappingRefusesWritableSpan()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1, writable: false);
        using var gnt = GrantDevice.Open(P0);
        var e = Assert.Throws<XenShareException>(() => gnt.Map(DomU.Id, [pages.Refs[0]], writable: true));
        Assert.Equal(Errno.EINVAL, e.Errno);
        using var ro = gnt.Map(DomU.Id, [pages.Refs[0]], writable: false);
        Assert.Throws<InvalidOperationException>(() => ro.Memory.Span.Length);
        Assert.Equal(4096, ro.ReadOnlyMemory.Span.Length);
    }

    [Fact]
    public void LG01_CountZeroFailsWithoutCallingTheKernel()
    {
        var counting = new CountingProcess(P0);
        using var gnt = GrantDevice.Open(counting);
        var e1 = Assert.Throws<XenShareException>(() => gnt.ExportDmaBuf(DomU.Id, ReadOnlySpan<GrantRef>.Empty));
        var e2 = Assert.Throws<XenShareException>(() => gnt.ImportDmaBuf(0, 0, DomU.Id));
        Assert.Equal(Errno.EINVAL, e1.Errno);
        Assert.Equal(Errno.EINVAL, e2.Errno);
        Assert.Equal(0, counting.Ioctls);
    }

    [Fact]
    public async Task LG02_WaitReleasedMapsEnoentToSuccessAndTimeoutToFalse()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        using var gnt = GrantDevice.Open(P0);
        var buf = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[0]], DmaBufBacking.WriteCombine);
        Assert.False(buf.WaitForRelease(TimeSpan.Zero));                 // ETIMEDOUT -> false
        var waiting = buf.WaitForReleaseAsync(TimeSpan.FromMinutes(2));
        await buf.DisposeAsync();
        Assert.True(await waiting.WaitAsync(TimeSpan.FromMinutes(1)));   // released (0 or ENOENT)
        Assert.True(buf.WaitForRelease(TimeSpan.FromSeconds(1)));        // ENOENT -> already gone
    }

    [Fact]
    public async Task EW06_CancellationStopsTheCallersWaitNotTheBuffer()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        using var gnt = GrantDevice.Open(P0);
        await using var buf = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[0]]);
        using var cts = new CancellationTokenSource();
        var waiting = buf.WaitForReleaseAsync(TimeSpan.FromSeconds(2), cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Equal(4096, P0.Lseek(buf.Fd, 0, Posix.SEEK_END));        // the buffer is still alive
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, pages.Refs[0].Value).Flags);
    }

    [Fact]
    public void LG03_SetMaxGrantsTreatsEnottyAsSuccess()
    {
        using var gnt = GrantDevice.Open(P0);
        gnt.SetMaxGrants(128);   // the kernel answers ENOTTY (GD05); no exception
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(gnt.Fd, GntDevIoctl.IOCTL_GNTDEV_SET_MAX_GRANTS, new byte[4]));
    }

    [Fact]
    public void LG04_SharePagesDeallocatesRightAfterMmap()
    {
        using var sharer = GrantSharer.Open(PU);
        var pages = sharer.Share(Dom0.Id, 2, deallocateAfterMap: true);
        // The grefs are already deallocated: a second DEALLOC of the range fails, the pages live on.
        Assert.Equal(-Errno.EINVAL, PU.Ioctl(sharer.Fd, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Bytes(new ioctl_gntalloc_dealloc_gref { index = pages.Index, count = 2 })));
        pages.Memory.Span[0] = 9;
        Assert.Equal(Gtf.permit_access, Entry(DomU, pages.Refs[0].Value).Flags);
        pages.Dispose();   // the mapping goes: access ends, pages freed
        Assert.Equal(0, Entry(DomU, pages.Refs[0].Value).Flags);
    }

    [Fact]
    public void ImportThroughTheTypedApiAndRelease()
    {
        int heap = SystemHeap.Allocate(P0, 2, contiguous: true);
        using var gnt = GrantDevice.Open(P0);
        using (var imp = gnt.ImportDmaBuf(heap, 2, DomU.Id))
        {
            Assert.Equal(2, imp.Refs.Count);
            Assert.Equal(Gtf.permit_access, Entry(Dom0, imp.Refs[0].Value).Flags);
        }
        Assert.Equal(0, P0.Close(heap));
    }
}
