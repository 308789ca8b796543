using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Devices;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Emulation;

/// <summary>The emulated display controller as a device file behind the seam (issue 12 item 3): its ioctl ABI
/// (<see cref="DisplayDeviceIoctl"/>) with the errno for every bad input, the typed <see cref="DisplayDevice"/>,
/// read-back of the scanned-out frame, counters, and release at close; each failure test ends leak-free.</summary>
public sealed class DisplayDeviceTests : EmulatorTest
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(1);

    private static int Ioctl<T>(XenShare.Emulation.Kernel.GuestProcess p, int fd, uint request, ref T arg) where T : unmanaged =>
        p.Ioctl(fd, request, MemoryMarshal.AsBytes(new Span<T>(ref arg)));

    [Fact]
    public void ImportFlipReadBack_InPlace_CountersAndRelease()
    {
        string path = Dom0.AddDisplay();
        Assert.Equal(DisplayDeviceIoctl.DefaultPath, path);
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        for (int i = 0; i < pages.Memory.Span.Length; i++) pages.Memory.Span[i] = (byte)(i * 13);
        using var gnt = GrantDevice.Open(P0);
        using var buf = gnt.ExportDmaBuf(DomU.Id, [.. pages.Refs], DmaBufBacking.WriteCombine);
        using (var display = DisplayDevice.Open(P0))
        {
            using var fb = display.Import(buf.Fd, 32, 32, 128);
            Assert.Equal(1, fb.Segments);
            Assert.Equal(0, fb.BouncedBytes);
            var frame = new byte[fb.FrameBytes];
            var e = Assert.Throws<XenShareException>(() => display.ReadFrame(frame));   // nothing flipped yet
            Assert.Equal(Errno.ENODATA, e.Errno);
            display.Flip(fb);
            Assert.Equal(frame.Length, display.ReadFrame(frame));
            Assert.True(frame.AsSpan().SequenceEqual(pages.Memory.Span));
            e = Assert.Throws<XenShareException>(() => display.ReadFrame(new byte[frame.Length - 1]));
            Assert.Equal(Errno.EINVAL, e.Errno);
            Assert.Equal(0, display.Sync(fb));                                       // in place: nothing to copy
            var stats = display.Stats();
            Assert.Equal(1, stats.Flips);
            Assert.Equal(1, stats.FramesScannedOut);
            Assert.Equal(1, stats.ZeroCopyFrames);
            Assert.Equal(0, stats.CpuBytesCopied);
            Assert.Equal(1, stats.Framebuffers);
            Assert.True(stats.DirectMapped);
            buf.Dispose();
            Assert.False(buf.WaitForRelease(TimeSpan.Zero));                        // the display holds it
        }
        Assert.True(buf.WaitForRelease(Patience));                                  // released with the file
        // EmulatorTest's Dispose runs the leak and isolation checks once the handles above are closed.
    }

    [Fact]
    public void BadInputGetsTheErrno_AndLeaksNothing()
    {
        Dom0.AddDisplay();
        Assert.Equal(Errno.ENOENT, Assert.Throws<XenShareException>(() => DisplayDevice.Open(P0, "/dev/xenshare/display9")).Errno);
        Assert.Throws<InvalidOperationException>(() => Dom0.AddDisplay());
        using var gnt = GrantDevice.Open(P0);
        int fd = Open(P0, DisplayDeviceIoctl.DefaultPath);
        var import = new xenshare_display_fb_import { fd = (uint)gnt.Fd, width = 16, height = 16, stride = 64, fourcc = DisplayFormats.XRGB8888 };
        Assert.Equal(-Errno.EINVAL, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_IMPORT, ref import));   // not a dma-buf
        import.fd = 999;
        Assert.Equal(-Errno.EBADF, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_IMPORT, ref import));
        import.fd = (uint)gnt.Fd;
        import.reserved = 1;
        Assert.Equal(-Errno.EINVAL, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_IMPORT, ref import));
        import.reserved = 0;
        import.fourcc = 0x36314752;   // 'RG16'
        Assert.Equal(-Errno.EINVAL, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_IMPORT, ref import));
        import.fourcc = DisplayFormats.XRGB8888;
        import.width = 0;
        Assert.Equal(-Errno.EINVAL, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_IMPORT, ref import));
        var fb = new xenshare_display_fb { fb_id = 7 };
        Assert.Equal(-Errno.ENOENT, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FLIP, ref fb));
        Assert.Equal(-Errno.ENOENT, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_RELEASE, ref fb));
        var sync = new xenshare_display_fb_sync { fb_id = 7 };
        Assert.Equal(-Errno.ENOENT, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_SYNC, ref sync));
        fb.reserved = 1;
        Assert.Equal(-Errno.EINVAL, Ioctl(P0, fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FLIP, ref fb));
        Assert.Equal(-Errno.EFAULT, P0.Ioctl(fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_IMPORT, new byte[8]));
        Assert.Equal(-Errno.EFAULT, P0.Ioctl(fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_STATS, new byte[8]));
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(fd, 0x1234, new byte[8]));
        Assert.Equal(-Errno.ENODATA, P0.Read(fd, new byte[64]));
        Assert.Equal(0, P0.Close(fd));
        gnt.Dispose();
        AssertNoLeaks();
    }

    [Fact]
    public void FramebuffersBelongToTheirFile_ReleaseTwiceIsEnoent()
    {
        Dom0.AddDisplay();
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        using var gnt = GrantDevice.Open(P0);
        using var buf = gnt.ExportDmaBuf(DomU.Id, [.. pages.Refs], DmaBufBacking.WriteCombine);
        using var a = DisplayDevice.Open(P0);
        using var b = DisplayDevice.Open(P0);
        var fb = a.Import(buf.Fd, 32, 32, 128);
        var other = new xenshare_display_fb { fb_id = fb.Id };
        Assert.Equal(-Errno.ENOENT, Ioctl(P0, b.Fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FLIP, ref other));   // not b's
        Assert.Equal(1, b.Stats().Framebuffers);                                     // one display, one count
        fb.Dispose();
        fb.Dispose();                                                                // once
        Assert.Equal(-Errno.ENOENT, Ioctl(P0, a.Fd, DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_RELEASE, ref other));
        Assert.Equal(0, a.Stats().Framebuffers);
    }

    [Fact]
    public void DirectMappedDisplay_ScatteredLargeBufferIsEnomem_CountedAsAMappingError()
    {
        using var host = new EmulatedHost(placement: MachinePlacement.Fragmented);
        var guest = host.CreateGuest();
        host.Dom0.AddDisplay();
        using var p0 = host.Dom0.StartProcess();
        using var pu = guest.StartProcess();
        using (var sharer = GrantSharer.Open(pu))
        using (var pages = sharer.Share(DomainId.Dom0, 128))
        using (var gnt = GrantDevice.Open(p0))
        using (var buf = gnt.ExportDmaBuf(guest.Id, [.. pages.Refs], DmaBufBacking.WriteCombine))
        using (var display = DisplayDevice.Open(p0))
        {
            var e = Assert.Throws<XenShareException>(() => display.Import(buf.Fd, 128, 1024, 512));
            Assert.Equal(Errno.ENOMEM, e.Errno);
            var stats = display.Stats();
            Assert.Equal(1, stats.MappingErrors);
            Assert.Equal(0, stats.Framebuffers);
        }
        Assert.Empty(host.CheckLeaks());
        Assert.Empty(host.CheckIsolation());
    }
}
