using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

/// <summary>
/// DB01, EX12, EX13, EI07, EI11: an exported buffer has five holders - its fd, a dup of it, an in-kernel
/// importer (attach + map), the exporter's gntdev fd (pinned by the buffer) and a gntdev import of the
/// buffer. In every order of letting go, the backing is freed exactly once, at the last one.
/// </summary>
public sealed class DmaBufLifetimeTests : DmaBufTest
{
    private static readonly string[] Holders = ["fd", "dup", "importer", "gntdev", "import"];

    private static IEnumerable<string[]> Permutations(string[] items)
    {
        if (items.Length <= 1) { yield return items; yield break; }
        for (int i = 0; i < items.Length; i++)
            foreach (var rest in Permutations([.. items[..i], .. items[(i + 1)..]]))
                yield return [items[i], .. rest];
    }

    public static TheoryData<string, uint> Orders()
    {
        var d = new TheoryData<string, uint>();
        foreach (var p in Permutations(Holders))
            foreach (uint flags in new uint[] { 0, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT })
                d.Add(string.Join(",", p), flags);
        return d;
    }

    [Theory]
    [MemberData(nameof(Orders))]
    public void EX13_DB01_EveryReleaseOrderFreesOnceAtTheLast(string order, uint flags)
    {
        var g = Share(3);
        int gd = Open(P0, GntDev);
        int gdImp = Open(P0, GntDev);
        var k = Dom0.Kernel;
        int ram = k.Ram.FreeCount, unpop = k.Unpopulated.FreeCount;
        int fd = ExportOk(gd, g, flags);
        int dup = P0.Dup(fd);
        Assert.True(dup >= 0);
        var buf = GetBuf(P0, fd);
        var dev = new DmaDevice(k, "gpu", DmaTranslation.Iommu);
        var att = buf.Attach(dev, out _)!;
        var t = buf.MapAttachment(att, DmaDirection.Bidirectional, out _)!;
        Assert.Equal(0, Import(P0, gdImp, fd, 3, DomU.Id.Value, out var refs));
        bool gdOpen = true;

        // The gntdev fd is not a holder of the buffer (the buffer pins the gntdev file): the backing goes
        // when the last of the other four lets go.
        var steps = order.Split(',');
        int holders = steps.Count(s => s != "gntdev");
        for (int i = 0; i < steps.Length; i++)
        {
            switch (steps[i])
            {
                case "fd": Assert.Equal(0, P0.Close(fd)); break;
                case "dup": Assert.Equal(0, P0.Close(dup)); break;
                case "importer":
                    buf.UnmapAttachment(att, t, DmaDirection.Bidirectional);
                    buf.Detach(att);
                    buf.Put();
                    break;
                case "gntdev": Assert.Equal(0, P0.Close(gd)); gdOpen = false; break;
                case "import": Assert.Equal(0, ImpRelease(P0, gdImp, fd)); break;
            }
            if (steps[i] != "gntdev") holders--;
            if (holders > 0)
            {
                Assert.False(buf.Released, $"released after step {i} ({steps[i]})");
                AssertMappedByExport(g);
                if (gdOpen) Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 0));
            }
            else
            {
                Assert.True(buf.Released, $"not released after step {i} ({steps[i]})");
                AssertNotMapped(g);
                Assert.Equal(ram, k.Ram.FreeCount);
                Assert.Equal(unpop, k.Unpopulated.FreeCount);
                if (gdOpen) Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 0));
            }
        }
        Assert.True(buf.Released);
        AssertNotMapped(g);
        Assert.Equal(ram, k.Ram.FreeCount);
        Assert.Equal(unpop, k.Unpopulated.FreeCount);
        Assert.Equal(0, dev.IommuMappedPages);
        Assert.All(refs, r => Assert.Equal(0, Entry(Dom0, r).Flags));
        Assert.Equal(0, P0.Close(gdImp));
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void EX12_GntdevClosedFirst_FileContextLivesUntilLastBuffer()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int a = ExportOk(gd, g);
        int b = ExportOk(gd, g, GntDevIoctl.GNTDEV_DMA_FLAG_WC);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(a));
        AssertMappedByExport(g);                                  // b still maps them
        Assert.Contains(Host.CheckLeaks(), l => l.Contains("gntdev file", StringComparison.Ordinal));
        Assert.Equal(0, P0.Close(b));
        AssertNotMapped(g);
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void DB01_EI07_ProcessExitWithExportAndImportFreesEverything()
    {
        var g = Share(2);
        var p = Dom0.StartProcess();
        int gd = Open(p, GntDev);
        Assert.Equal(0, Export(p, gd, 0, DomU.Id.Value, g.Refs, out int fd));
        int gd2 = Open(p, GntDev);
        Assert.Equal(0, Import(p, gd2, fd, 2, DomU.Id.Value, out _));
        int heap = SystemHeap.Allocate(p, 2, contiguous: false);
        Assert.Equal(0, Import(p, gd, heap, 2, DomU.Id.Value, out _));
        p.Dispose();
        AssertNotMapped(g);
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void EX13_EX06_ErrorPathFreesOnce()
    {
        var g = Share(3);
        int gd = Open(P0, GntDev);
        var k = Dom0.Kernel;
        int ram = k.Ram.FreeCount;
        for (int round = 0; round < 3; round++)
        {
            foreach (uint flags in new uint[] { 0, 1, 2 })
            {
                Assert.Equal(-Errno.EINVAL, Export(P0, gd, flags, DomU.Id.Value, [g.Refs[0], g.Refs[1], 4000], out _));
                AssertNotMapped(g);
                Assert.Equal(ram, k.Ram.FreeCount);
                Assert.Equal(k.Unpopulated.Count, k.Unpopulated.FreeCount);
                Assert.Equal(0, Dom0.Domain.P2M.CountForeign());
            }
        }
        int fd = ExportOk(gd, g);                                  // a good export afterwards is unaffected
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }
}

/// <summary>EX07/EX13: the EMFILE error path frees the mapped grants and the backing exactly once.</summary>
public sealed class DmaBufLifetimeEmfileTests() : DmaBufTest(null, new KernelOptions { MaxFdsPerProcess = 2 })
{
    [Theory]
    [InlineData(0u)]
    [InlineData(1u)]
    public void EX07_EX13_EmfilePathFreesOnce(uint flags)
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int d = P0.Dup(gd);
        var k = Dom0.Kernel;
        int ram = k.Ram.FreeCount;
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(-Errno.EMFILE, Export(P0, gd, flags, DomU.Id.Value, g.Refs, out _));
            AssertNotMapped(g);
            Assert.Equal(ram, k.Ram.FreeCount);
            Assert.Equal(k.Unpopulated.Count, k.Unpopulated.FreeCount);
            Assert.Equal(0, Dom0.Domain.MapTrackInUse);
            Assert.Equal(-Errno.ENOENT, Wait(P0, gd, 2, 0));
        }
        Assert.Equal(0, P0.Close(d));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }
}
