using XenShare.Abi;
using XenShare.Api;
using XenShare.Emulation.Devices;

namespace XenShare.Tests.Emulation;

public sealed class ScanoutEngineTests : EmulatorTest
{
    [Fact]
    public void WcExportIsOneSegmentAndScansOutInPlace()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 4);
        for (int i = 0; i < pages.Length; i++) pages.Memory.Span[i] = (byte)(i * 7);
        using var gnt = GrantDevice.Open(P0);
        var buf = gnt.ExportDmaBuf(DomU.Id, [.. pages.Refs], DmaBufBacking.WriteCombine);
        using (var engine = new ScanoutEngine(Dom0.Kernel))
        {
            var fb = engine.Attach(P0, buf.Fd, 64, 64, 256);
            Assert.Equal(1, fb.SegmentCount);
            engine.Flip(fb);
            var seen = new byte[64 * 256];
            Assert.True(engine.ScanOut((y, row) => row.CopyTo(seen.AsSpan(y * 256))));
            Assert.True(seen.AsSpan().SequenceEqual(pages.Memory.Span[..seen.Length]));
            Assert.Equal(0, engine.CpuBytesCopied);
            Assert.Equal(1, engine.ZeroCopyFrames);
            buf.Dispose();
            Assert.False(buf.WaitForRelease(TimeSpan.Zero));          // the engine still holds it
        }
        Assert.True(buf.WaitForRelease(TimeSpan.FromMinutes(1)));     // engine disposed: released
    }

    [Fact]
    public void ScatteredBufferIsRefusedWithEinvalAndTheIommuDeviceTakesIt()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 4);
        pages.Memory.Span[4096 * 3] = 42;
        using var gnt = GrantDevice.Open(P0);
        // Fragment the unpopulated GFNs so a ballooned export gets a hole in the middle.
        var a = gnt.Map(DomU.Id, [pages.Refs[0]]);
        using var b = gnt.Map(DomU.Id, [pages.Refs[1]]);
        a.Dispose();
        using var buf = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[2], pages.Refs[3]]);
        using (var engine = new ScanoutEngine(Dom0.Kernel))
        {
            int rc = engine.TryAttach(P0, buf.Fd, 32, 64, 128, out var fb, out string? reason);
            Assert.Equal(-Errno.EINVAL, rc);
            Assert.Null(fb);
            Assert.Contains("one contiguous segment", reason, StringComparison.Ordinal);
            var e = Assert.Throws<XenShare.Emulation.Devices.DeviceException>(() => engine.Attach(P0, buf.Fd, 32, 64, 128));
            Assert.Equal(Errno.EINVAL, e.Errno);
            Assert.Equal(0, engine.FramebufferCount);
        }
        using (var iommu = new IommuImporter(Dom0.Kernel))
        {
            using var import = iommu.ImportBuffer(P0, buf.Fd);
            Assert.Single(import.Table.Segments);
            var one = new byte[1];
            Assert.Equal(0, import.Read(4096, one));
            Assert.Equal(42, one[0]);
        }
    }

    [Fact]
    public void AttachRefusesNonDmaBufFdsAndFramesLargerThanTheBuffer()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        using var gnt = GrantDevice.Open(P0);
        using var buf = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[0]], DmaBufBacking.WriteCombine);
        using var engine = new ScanoutEngine(Dom0.Kernel);
        Assert.Equal(-Errno.EINVAL, engine.TryAttach(P0, gnt.Fd, 16, 16, 64, out _, out _));
        Assert.Equal(-Errno.EBADF, engine.TryAttach(P0, 999, 16, 16, 64, out _, out _));
        Assert.Equal(-Errno.EINVAL, engine.TryAttach(P0, buf.Fd, 64, 64, 256, out _, out string? reason));
        Assert.Contains("needs", reason, StringComparison.Ordinal);
    }
}
