using System.Buffers.Binary;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>GD03's munmap rule, run once per dom0 type: on an auto-translated domain (Arm, the default)
/// a munmap alone only drops the mapping's use - the grants stay mapped, the map stays listed, the index
/// cannot be mmapped again and the unmap notification waits for UNMAP_GRANT_REF or the file's release;
/// on x86 PV (use_ptemod) the grants and the notify byte go at munmap, the event at the last user.</summary>
public abstract class GntDevMunmapTestBase(DomainConfig? dom0) : EmulatorTest(null, null, dom0)
{
    private const int RW = Posix.PROT_READ | Posix.PROT_WRITE;
    private const int Page = 4096;

    /// <summary>True for the x86 PV dom0 (unmap at munmap).</summary>
    protected abstract bool Pv { get; }

    private static Span<byte> Mem(long addr, int len) => GuestMemory.AsSpan(addr, len);

    private (int Fd, uint[] Refs, long Addr) Share(int count)
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (index, refs) = AllocGrefs(PU, ga, Dom0.Id, count);
        long addr = PU.Mmap(ga, (long)index, count * (long)Page, RW, Posix.MAP_SHARED);
        Assert.True(addr > 0, addr.ToString());
        return (ga, refs, addr);
    }

    private void Unshare((int Fd, uint[] Refs, long Addr) s)
    {
        Assert.Equal(0, PU.Munmap(s.Addr, s.Refs.Length * (long)Page));
        Assert.Equal(0, PU.Close(s.Fd));
    }

    private static int SetNotify(GuestProcess p, int fd, ulong index, uint action, uint port = 0) =>
        p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, Bytes(new ioctl_gntdev_unmap_notify { index = index, action = action, event_channel_port = port }));

    private ushort Flags(uint gref) => Entry(DomU, gref).Flags;

    [Fact]
    public void GD03_MunmapWithoutUnmap_GrantsAndNotifyFollowTheDomainType()
    {
        var s = Share(2);
        var ch = Channel();
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, 2 * Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Mem(da, 2 * Page)[Page + 50] = 0xEE;
        Assert.Equal(0, SetNotify(P0, gd, off + Page + 50, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, ch.Port0));
        Assert.Equal(0, P0.Munmap(da, 2 * Page));
        Assert.Null(ReadPort(PU, ch.EvU));                                    // the event waits for the last user on both
        if (Pv)
        {
            Assert.Equal(Gtf.permit_access, Flags(s.Refs[0]));                // unmapped at munmap (MMU notifier)
            Assert.Equal(0, Dom0.Domain.MapTrackInUse);
            Assert.Equal(0, Mem(s.Addr, 2 * Page)[Page + 50]);                // the byte went with the unmap
        }
        else
        {
            Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Flags(s.Refs[0]));
            Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Flags(s.Refs[1]));
            Assert.Equal(2, Dom0.Domain.MapTrackInUse);
            Assert.Equal(0xEE, Mem(s.Addr, 2 * Page)[Page + 50]);             // notify not run yet
        }
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, 2 * Page, RW, Posix.MAP_SHARED));   // same index again
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 2));                       // still listed; last user: unmap + notify
        Assert.Equal(ch.PortU, ReadPort(PU, ch.EvU));
        Assert.Null(ReadPort(PU, ch.EvU));
        Assert.Equal(0, Mem(s.Addr, 2 * Page)[Page + 50]);
        Assert.Equal(Gtf.permit_access, Flags(s.Refs[0]));
        Assert.Equal(Gtf.permit_access, Flags(s.Refs[1]));
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, off, 2));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(ch.Ev0));
        Assert.Equal(0, PU.Close(ch.EvU));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD03_GD09_MunmappedMapReleasedAtFileClose_RunsTheNotify()
    {
        var s = Share(1);
        var ch = Channel();
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Mem(da, Page)[9] = 0x99;
        Assert.Equal(0, SetNotify(P0, gd, off + 9, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, ch.Port0));
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(Pv ? 0 : 1, Dom0.Domain.MapTrackInUse);
        Assert.Equal(Pv ? 0 : 0x99, Mem(s.Addr, Page)[9]);
        Assert.Null(ReadPort(PU, ch.EvU));
        Assert.Equal(0, P0.Close(gd));                                         // release: the list's user goes
        Assert.Equal(ch.PortU, ReadPort(PU, ch.EvU));
        Assert.Equal(0, Mem(s.Addr, Page)[9]);
        Assert.Equal(Gtf.permit_access, Flags(s.Refs[0]));
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        Assert.Equal(0, P0.Close(ch.Ev0));
        Assert.Equal(0, PU.Close(ch.EvU));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD03_MunmapThenProcessExit_LeavesNothing()
    {
        var s = Share(1);
        var p = Dom0.StartProcess();
        int gd = Open(p, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(p, gd, DomU.Id, s.Refs);
        long da = p.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Assert.Equal(0, p.Munmap(da, Page));
        p.Dispose();
        Assert.Equal(Gtf.permit_access, Flags(s.Refs[0]));
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        Unshare(s);
        AssertNoLeaks();
    }
}

/// <summary>GD03 on an Arm dom0 (auto-translated).</summary>
public sealed class GntDevMunmapArmTests() : GntDevMunmapTestBase(null)
{
    protected override bool Pv => false;
}

/// <summary>GD03 on an x86 PV dom0 (use_ptemod).</summary>
public sealed class GntDevMunmapPvTests() : GntDevMunmapTestBase(new DomainConfig { Type = DomainType.X86Pv })
{
    protected override bool Pv => true;
}
