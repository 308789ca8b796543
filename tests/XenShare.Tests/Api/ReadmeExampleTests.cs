using XenShare.Api;
using XenShare.Emulation;

namespace XenShare.Tests.Api;

/// <summary>The README's library example, verbatim in spirit, so it keeps compiling and working.</summary>
public sealed class ReadmeExampleTests
{
    [Fact]
    public async Task ReadmeLibraryExampleWorks()
    {
        using var host = new EmulatedHost();
        var domU = host.CreateGuest();
        using (var frontend = domU.StartProcess())
        using (var backend = host.Dom0.StartProcess())
        {
            using var gntalloc = GrantSharer.Open(frontend);
            using var pages = gntalloc.Share(host.Dom0.Id, pageCount: 4);
            pages.Memory.Span.Fill(0x42);

            using var gntdev = GrantDevice.Open(backend);
            await using var dmabuf = gntdev.ExportDmaBuf(domU.Id, pages.Refs, DmaBufBacking.WriteCombine);   // refs: no copy
            Assert.Equal(4 * 4096, dmabuf.Size);
            dmabuf.Close();
            bool released = await dmabuf.WaitForReleaseAsync(TimeSpan.FromSeconds(60));
            Assert.True(released);
        }
        Assert.Empty(host.CheckLeaks());
        Assert.Empty(host.Isolation.Hazards);   // no domain read memory its owner freed
    }
}
