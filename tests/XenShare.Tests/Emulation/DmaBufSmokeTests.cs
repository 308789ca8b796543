using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

public sealed class DmaBufSmokeTests : EmulatorTest
{
    [Fact]
    public async Task ExportWcAttachMapWaitRelease()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (index, refs) = AllocGrefs(PU, ga, Dom0.Id, 4);
        int gd = Open(P0, "/dev/xen/gntdev");
        var arg = new byte[16 + 4 * 4];
        MemoryMarshal.Write(arg, new ioctl_gntdev_dmabuf_exp_from_refs { flags = GntDevIoctl.GNTDEV_DMA_FLAG_WC, count = 4, domid = DomU.Id.Value });
        refs.AsSpan().CopyTo(MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16)));
        Assert.Equal(0, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, arg));
        int fd = (int)MemoryMarshal.Read<uint>(arg.AsSpan(8));
        Assert.Equal(4 * 4096, P0.Lseek(fd, 0, Posix.SEEK_END));
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, refs[2]).Flags);

        var buf = DmaBufObject.Get(P0, fd, out int e)!;
        var dev = new DmaDevice(Dom0.Kernel, "scanout");
        var att = buf.Attach(dev, out e)!;
        var sgt = buf.MapAttachment(att, DmaDirection.ToDevice, out e)!;
        Assert.Single(sgt.Segments);
        long ua = PU.Mmap(ga, (long)index, 4 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        GuestMemory.AsSpan(ua, 4 * 4096)[3 * 4096 + 7] = 99;
        var px = new byte[1];
        Assert.Equal(0, dev.DmaRead(sgt.Segments[0].DmaAddress + 3 * 4096 + 7, px));
        Assert.Equal(99, px[0]);
        buf.Detach(att);
        buf.Put();

        var wait = Bytes(new ioctl_gntdev_dmabuf_exp_wait_released { fd = (uint)fd, wait_to_ms = 0 });
        Assert.Equal(-Errno.ETIMEDOUT, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, wait));
        var waiter = Task.Run(() => P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, Bytes(new ioctl_gntdev_dmabuf_exp_wait_released { fd = (uint)fd, wait_to_ms = 60000 })));
        Assert.Equal(0, P0.Close(fd));
        int waited = await waiter.WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(waited == 0 || waited == -Errno.ENOENT, $"wait: {waited}");  // depends on who ran first
        Assert.Equal(Gtf.permit_access, Entry(DomU, refs[2]).Flags);
        Assert.Equal(-Errno.ENOENT, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, wait));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, PU.Munmap(ua, 4 * 4096));
        Assert.Equal(0, PU.Close(ga));
    }

    [Fact]
    public void ImportHeapBufferAndPeerMapsIt()
    {
        int buf = SystemHeap.Allocate(P0, 3, contiguous: false);
        Assert.True(buf >= 0);
        long va = P0.Mmap(buf, 0, 3 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(va > 0);
        GuestMemory.AsSpan(va, 3 * 4096)[8192] = 42;
        int gd = Open(P0, "/dev/xen/gntdev");
        var arg = new byte[16 + 12];
        MemoryMarshal.Write(arg, new ioctl_gntdev_dmabuf_imp_to_refs { fd = (uint)buf, count = 3, domid = DomU.Id.Value });
        Assert.Equal(0, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, arg));
        var refs = MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16)).ToArray();
        Assert.All(refs, r => Assert.True(r >= 8));

        int gdu = Open(PU, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(PU, gdu, Dom0.Id, refs);
        long ua = PU.Mmap(gdu, (long)off, 3 * 4096, Posix.PROT_READ, Posix.MAP_SHARED);
        Assert.True(ua > 0);
        Assert.Equal(42, GuestMemory.AsSpan(ua, 3 * 4096)[8192]);

        // EI09: release while mapped: deferred.
        Assert.Equal(0, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE, Bytes(new ioctl_gntdev_dmabuf_imp_release { fd = (uint)buf })));
        Assert.Equal(3, Dom0.Kernel.DeferredReclaims);
        Assert.Equal(0, P0.Munmap(va, 3 * 4096));
        Assert.Equal(0, P0.Close(buf));
        Assert.Equal(42, GuestMemory.AsSpan(ua, 3 * 4096)[8192]);
        Assert.Equal(0, PU.Munmap(ua, 3 * 4096));
        Assert.Equal(3, Dom0.Kernel.DeferredReclaims);             // GD03 (Arm): the peer still maps the grants
        Assert.Equal(0, UnmapGrantRef(PU, gdu, off, 3));
        Assert.Equal(0, Dom0.Kernel.DeferredReclaims);
        Assert.Equal(0, PU.Close(gdu));
        Assert.Equal(0, P0.Close(gd));
    }
}
