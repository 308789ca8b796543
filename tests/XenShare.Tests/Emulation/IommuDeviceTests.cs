using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Devices;

namespace XenShare.Tests.Emulation;

/// <summary>The emulated device with its own MMU as a device file behind the seam (issue 12 item 3): a scattered
/// dma-buf becomes one IOVA range the device reads; every bad input gets its errno; imports go with the file.</summary>
public sealed class IommuDeviceTests : EmulatorTest
{
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(1);

    [Fact]
    public void ImportsAScatteredBuffer_AsOneIovaRange_AndReadsIt_ReleasedWithTheFile()
    {
        Assert.Equal(IommuDeviceIoctl.DefaultPath, Dom0.AddIommuDevice());
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 3);
        pages.Memory.Span[0] = 1;
        pages.Memory.Span[4096 * 2 + 7] = 42;
        using var gnt = GrantDevice.Open(P0);
        // A hole in dom0's unpopulated range makes the flags-0 export two scatterlist entries.
        var hole = gnt.Map(DomU.Id, [pages.Refs[0]]);
        using var keep = gnt.Map(DomU.Id, [pages.Refs[1]]);
        hole.Dispose();
        using var buf = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[0], pages.Refs[2]]);
        using (var device = IommuDevice.Open(P0))
        {
            using var import = device.Import(buf.Fd);
            Assert.Equal(1, import.Segments);
            Assert.Equal(2 * 4096, import.Size);
            var one = new byte[8];
            import.Read(4096, one);
            Assert.Equal(42, one[7]);
            import.Read(0, one.AsSpan(0, 1));
            Assert.Equal(1, one[0]);
            var e = Assert.Throws<XenShareException>(() => import.Read(2 * 4096 - 4, new byte[8]));
            Assert.Equal(Errno.EINVAL, e.Errno);
            buf.Dispose();
            Assert.False(buf.WaitForRelease(TimeSpan.Zero));   // the device holds it
        }
        Assert.True(buf.WaitForRelease(Patience));
    }

    [Fact]
    public void BadInputGetsTheErrno()
    {
        Dom0.AddIommuDevice();
        Assert.Throws<InvalidOperationException>(() => Dom0.AddIommuDevice());
        using var gnt = GrantDevice.Open(P0);
        int fd = Open(P0, IommuDeviceIoctl.DefaultPath);
        var import = new xenshare_iommu_import { fd = (uint)gnt.Fd };
        Assert.Equal(-Errno.EINVAL, P0.Ioctl(fd, IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_IMPORT, MemoryMarshal.AsBytes(new Span<xenshare_iommu_import>(ref import))));
        import.fd = 999;
        Assert.Equal(-Errno.EBADF, P0.Ioctl(fd, IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_IMPORT, MemoryMarshal.AsBytes(new Span<xenshare_iommu_import>(ref import))));
        import.direction = 3;
        Assert.Equal(-Errno.EINVAL, P0.Ioctl(fd, IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_IMPORT, MemoryMarshal.AsBytes(new Span<xenshare_iommu_import>(ref import))));
        var handle = new xenshare_iommu_handle { handle = 5 };
        Assert.Equal(-Errno.ENOENT, P0.Ioctl(fd, IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_RELEASE, MemoryMarshal.AsBytes(new Span<xenshare_iommu_handle>(ref handle))));
        var read = new byte[16 + 4];
        MemoryMarshal.Write(read, new xenshare_iommu_read { handle = 5, length = 4 });
        Assert.Equal(-Errno.ENOENT, P0.Ioctl(fd, IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_READ, read));
        MemoryMarshal.Write(read, new xenshare_iommu_read { handle = 5, length = 5 });
        Assert.Equal(-Errno.EFAULT, P0.Ioctl(fd, IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_READ, read));   // shorter than header + length
        MemoryMarshal.Write(read, new xenshare_iommu_read { handle = 5, length = IommuDeviceIoctl.MaxRead + 1 });
        Assert.Equal(-Errno.EINVAL, P0.Ioctl(fd, IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_READ, read));
        Assert.Equal(-Errno.EFAULT, P0.Ioctl(fd, IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_IMPORT, new byte[4]));
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(fd, 0x4242, new byte[8]));
        Assert.Equal(0, P0.Close(fd));
        gnt.Dispose();
        AssertNoLeaks();
    }
}
