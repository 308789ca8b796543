using XenShare.Abi;
using XenShare.Native;

namespace XenShare.Tests.Native;

[Collection(NativeSyscallsGroup.Name)]
public sealed class NativeXenTests
{
    [Fact]
    public void Probe_AgreesWithIsXenGuest_AndDescribesEveryDevice()
    {
        NativeXenProbe probe = NativeXen.Probe();

        Assert.Equal(NativeXen.IsXenGuest, probe.GntDevExists);
        string text = probe.ToString();
        Assert.Contains(NativeXen.GntDevPath, text, StringComparison.Ordinal);
        Assert.Contains(NativeXen.GntAllocPath, text, StringComparison.Ordinal);
        Assert.Contains(NativeXen.EvtChnPath, text, StringComparison.Ordinal);
        Assert.Contains("dma-buf", text, StringComparison.Ordinal);
        if (!probe.GntDevExists)
        {
            Assert.Equal(-Errno.ENOENT, probe.GntDevOpenResult);
            Assert.Null(probe.DmaBufProbeResult);
            Assert.Null(probe.HasGntDevDmaBuf);
            Assert.False(probe.IsComplete);
            Assert.Contains("missing", text, StringComparison.Ordinal);
        }
    }

    [XenFact]
    public void Probe_OnXenGuest_ReportsEverything()
    {
        NativeXenProbe probe = NativeXen.Probe();

        Assert.True(probe.IsComplete, probe.ToString());
        Assert.Equal(-Errno.ENOENT, probe.DmaBufProbeResult);
    }

    [XenFact]
    public void GntDev_OpenThenClose()
    {
        using var process = new LinuxGuestProcess();

        int fd = process.Open(NativeXen.GntDevPath, Posix.O_RDWR | Posix.O_CLOEXEC);
        Assert.True(fd >= 0, "open gntdev: " + Errno.Name(-fd));
        Assert.Equal(1, process.OwnedFdCount);
        Assert.Equal(0, process.Close(fd));
        Assert.Equal(0, process.OwnedFdCount);
    }
}
