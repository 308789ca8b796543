using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Tests.Emulation;

namespace XenShare.Tests.Reliability;

/// <summary>Every bug the reliability campaigns found, as a named regular test (docs/reliability.md).</summary>
public sealed class ReliabilityRegressionTests : DmaBufTest
{
    /// <summary>R1 (fuzz): a 16..19-byte EXP_FROM_REFS / IMP_TO_REFS argument and a 16..23-byte
    /// ALLOC_GREF argument made the decoder throw (AsRef past the end) instead of answering EFAULT.</summary>
    [Fact]
    public void R1_ShortExportImportAllocArguments_AreEfault_NotExceptions()
    {
        int gd = Open(P0, GntDev);
        int ga = Open(PU, GntAlloc);
        for (int len = 0; len < 20; len++)
        {
            Assert.Equal(-Errno.EFAULT, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, new byte[len]));
            Assert.Equal(-Errno.EFAULT, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, new byte[len]));
        }
        for (int len = 0; len < 24; len++)
            Assert.Equal(-Errno.EFAULT, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, new byte[len]));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, PU.Close(ga));
    }

    /// <summary>R2 (fuzz with faults): releasing a WC/COHERENT export when machine memory cannot be
    /// allocated threw "cannot repopulate" out of close(); now the GFN is kept and repopulated later.</summary>
    [Fact]
    public void R2_ExportReleaseWhenRepopulateFails_DoesNotThrow_AndIsRetried()
    {
        var g = Share(3);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT);
        Xen.Faults.FailNth(FaultPoint.MachineFrame, 0);
        Assert.Equal(0, P0.Close(fd));                     // release: the first repopulation fails
        Xen.Faults.Disarm();
        Assert.Equal(1, Xen.Faults.Injected(FaultPoint.MachineFrame));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();                                    // the leak check retries and repopulates
    }

    /// <summary>R3 (fuzz with faults): UNMAP_GRANT_REF at a live export's map index dropped the map's only
    /// user: the grants were unmapped and the backing freed under a live dma-buf, and freed again at
    /// release (double free). Now the export holds its own user.</summary>
    [Theory]
    [InlineData(0u)]
    [InlineData(GntDevIoctl.GNTDEV_DMA_FLAG_WC)]
    public void R3_UnmapGrantRefAtExportIndex_KeepsTheBufferMapped_FreedOnceAtRelease(uint flags)
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g, flags);
        Assert.Equal(0, UnmapGrantRef(P0, gd, 0, 2));      // the export's map is the first at index 0
        AssertMappedByExport(g);                            // still mapped for the buffer
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, 0, 2));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, Wait(P0, gd, fd, 1000) is 0 or -Errno.ENOENT ? 0 : 1);
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    /// <summary>R4 (review of R3): mmap at a live flag-0 export's index mapped its grants a second time
    /// into the same pages; the failure path then unmapped the export's own mappings. Now refused.</summary>
    [Fact]
    public void R4_MmapAtExportIndex_IsRefused_ExportStaysMapped()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, 0, 2 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED));
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, 0, 2 * 4096, Posix.PROT_READ, Posix.MAP_SHARED));
        AssertMappedByExport(g);
        Assert.Equal(0, P0.Close(fd));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    /// <summary>R5 (fuzz with faults, fixed): importing a gntdev export into a gntdev file was a reference
    /// cycle: the export pins its gntdev file (EX12) and the file's import held the buffer until
    /// IMP_RELEASE or the file's release (EI11), which never came once every fd was closed (Linux has that
    /// cycle). Imports are now released when the last fd or mmap of the gntdev file goes.</summary>
    [Fact]
    public void R5_ImportOfOwnExport_NoCycle_ClosingGntdevReleasesTheImportAndTheBuffer()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        Assert.Equal(0, Import(P0, gd, fd, 1, DomU.Id.Value, out _));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, ImpRelease(P0, gd, fd));            // explicit release works as before
        AssertNotMapped(g);
        fd = ExportOk(gd, g);
        Assert.Equal(0, Import(P0, gd, fd, 1, DomU.Id.Value, out _));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));                       // last fd: imports released (EI11), cycle broken
        AssertNotMapped(g);
        g.Close();
        AssertNoLeaks();
    }

    /// <summary>R7 (fuzz, fixed): DEALLOC_GREF with a count near int.MaxValue at the index of a gref that is
    /// not the file's first overflowed the run check and indexed past the gref list (an exception out of the
    /// ioctl). Now EINVAL, and the grefs stay.</summary>
    [Fact]
    public void R7_DeallocWithAHugeCount_IsEinval_NotAnException()
    {
        int ga = Open(P0, GntAlloc);
        var (index, refs) = AllocGrefs(P0, ga, DomU.Id, 2);
        var arg = Bytes(new ioctl_gntalloc_dealloc_gref { index = index + 4096, count = int.MaxValue });
        Assert.Equal(-Errno.EINVAL, P0.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, arg));
        Assert.All(refs, r => Assert.Equal(Gtf.permit_access, Entry(Dom0, r).Flags));   // still granted
        Assert.Equal(0, P0.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Bytes(new ioctl_gntalloc_dealloc_gref { index = index, count = 2 })));
        Assert.Equal(0, P0.Close(ga));
        AssertNoLeaks();
    }

    /// <summary>Helper check used by the fault tests: the refs stay valid grants with no pin.</summary>
    internal static uint ReadU32(byte[] a, int at) => MemoryMarshal.Read<uint>(a.AsSpan(at));
}
