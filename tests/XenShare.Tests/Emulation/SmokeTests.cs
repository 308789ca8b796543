using XenShare.Abi;

namespace XenShare.Tests.Emulation;

public sealed class SmokeTests : EmulatorTest
{
    [Fact]
    public void DomUSharesAPageAndDom0MapsIt()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (index, refs) = AllocGrefs(PU, ga, Dom0.Id, 2);
        long ua = PU.Mmap(ga, (long)index, 8192, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(ua > 0, ua.ToString());
        GuestMemory.AsSpan(ua, 8192)[4100] = 0x5a;

        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, refs);
        Assert.Equal(0UL, off);
        long da = P0.Mmap(gd, (long)off, 8192, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(da > 0, da.ToString());
        Assert.Equal(0x5a, GuestMemory.AsSpan(da, 8192)[4100]);
        GuestMemory.AsSpan(da, 8192)[5] = 0x77;
        Assert.Equal(0x77, GuestMemory.AsSpan(ua, 8192)[5]);
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, refs[0]).Flags);

        Assert.Equal(0, P0.Munmap(da, 8192));
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, refs[0]).Flags);   // GD03 (Arm)
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 2));
        Assert.Equal(Gtf.permit_access, Entry(DomU, refs[0]).Flags);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, PU.Munmap(ua, 8192));
        Assert.Equal(0, PU.Close(ga));
    }
}
