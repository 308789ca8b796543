using System.Buffers.Binary;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>gntdev basics (GD01-GD09) through the byte-level ioctl path: domU shares pages with gntalloc,
/// dom0 maps them with gntdev.</summary>
public sealed class GntDevTests : EmulatorTest
{
    private const int RW = Posix.PROT_READ | Posix.PROT_WRITE;
    private const int Page = 4096;

    /// <summary>domU allocates <paramref name="count"/> grefs for dom0 and mmaps them.</summary>
    private (int Fd, uint[] Refs, long Addr) Share(int count, bool writable = true)
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (index, refs) = AllocGrefs(PU, ga, Dom0.Id, count, writable);
        long addr = PU.Mmap(ga, (long)index, count * (long)Page, RW, Posix.MAP_SHARED);
        Assert.True(addr > 0, addr.ToString());
        return (ga, refs, addr);
    }

    private void Unshare((int Fd, uint[] Refs, long Addr) s)
    {
        Assert.Equal(0, PU.Munmap(s.Addr, s.Refs.Length * (long)Page));
        Assert.Equal(0, PU.Close(s.Fd));
    }

    private static Span<byte> Mem(long addr, int len) => GuestMemory.AsSpan(addr, len);

    private static int MapRc(GuestProcess p, int fd, byte[] arg) => p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg);

    private static int SetNotify(GuestProcess p, int fd, ulong index, uint action, uint port = 0) =>
        p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, Bytes(new ioctl_gntdev_unmap_notify { index = index, action = action, event_channel_port = port }));

    // ------------------------------------------------------------------ GD01

    [Fact]
    public void GD01_CountZero_IsEinval()
    {
        int gd = Open(P0, "/dev/xen/gntdev");
        var arg = new byte[24];
        Assert.Equal(-Errno.EINVAL, MapRc(P0, gd, arg));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void GD01_CountOverDefaultLimit_IsEinval()
    {
        Assert.Equal(65536, new KernelOptions().GntDevLimit);
        int gd = Open(P0, "/dev/xen/gntdev");
        var refs = new uint[65537];
        Array.Fill(refs, 8u);
        var arg = MapGrantRefArg(DomU.Id, refs);
        Assert.Equal(-Errno.EINVAL, MapRc(P0, gd, arg));
        // a huge count with a short buffer is still refused on the count first
        var shortArg = new byte[24];
        MemoryMarshal.Write(shortArg, uint.MaxValue);
        Assert.Equal(-Errno.EINVAL, MapRc(P0, gd, shortArg));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void GD01_FirstMapIsIndexZero_LaterMapsFirstFit()
    {
        var s = Share(4);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong a = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0], s.Refs[1]);       // pages 0-1
        ulong b = MapGrantRefs(P0, gd, DomU.Id, s.Refs[2]);                  // page 2
        ulong c = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0], s.Refs[1], s.Refs[2]); // pages 3-5
        Assert.Equal(0UL, a);
        Assert.Equal(2UL * Page, b);
        Assert.Equal(3UL * Page, c);

        Assert.Equal(0, UnmapGrantRef(P0, gd, a, 2));                        // hole at 0-1
        ulong d = MapGrantRefs(P0, gd, DomU.Id, s.Refs[3]);                  // first fit: 0
        Assert.Equal(0UL, d);
        ulong e = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0], s.Refs[1]);       // hole of 1 too small: 6
        Assert.Equal(6UL * Page, e);
        // Linux takes a hole only when index + count < next index: a 1-page hole is skipped even for a
        // 1-page map (seen on real Linux 6.1 in the conformance run), so f goes to the end: 8.
        ulong f = MapGrantRefs(P0, gd, DomU.Id, s.Refs[2]);
        Assert.Equal(8UL * Page, f);

        Assert.Equal(0, UnmapGrantRef(P0, gd, b, 1));
        Assert.Equal(0, UnmapGrantRef(P0, gd, c, 3));
        Assert.Equal(0, UnmapGrantRef(P0, gd, d, 1));
        Assert.Equal(0, UnmapGrantRef(P0, gd, e, 2));
        Assert.Equal(0, UnmapGrantRef(P0, gd, f, 1));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
    }

    [Fact]
    public void GD01_NothingMappedUntilMmap()
    {
        var s = Share(2);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        foreach (var r in s.Refs) Assert.Equal(Gtf.permit_access, Entry(DomU, r).Flags);
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);

        long da = P0.Mmap(gd, (long)off, 2 * Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0, da.ToString());
        foreach (var r in s.Refs) Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, r).Flags);
        Assert.Equal(2, Dom0.Domain.MapTrackInUse);

        Assert.Equal(0, P0.Munmap(da, 2 * Page));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 2));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
    }

    [Fact]
    public void GD01_MapOfUnknownRefSucceedsUntilMmap()
    {
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, 12345);
        Assert.Equal(0UL, off);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    // ------------------------------------------------------------------ GD02

    [Fact]
    public void GD02_WritableMmapWithoutMapShared_IsEinval()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_PRIVATE));
        Assert.Equal(Gtf.permit_access, Entry(DomU, s.Refs[0]).Flags);
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);

        // read-only MAP_PRIVATE is allowed (Linux checks VM_WRITE && !VM_SHARED only)
        long da = P0.Mmap(gd, (long)off, Page, Posix.PROT_READ, Posix.MAP_PRIVATE);
        Assert.True(da > 0, da.ToString());
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD02_NoMapAtOffsetOrLength_IsEinval()
    {
        var s = Share(2);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off + 8 * Page, 2 * Page, RW, Posix.MAP_SHARED)); // no map there
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off + Page, Page, RW, Posix.MAP_SHARED));          // inside, not at start
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED));                 // too short
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, 3 * Page, RW, Posix.MAP_SHARED));             // too long
        foreach (var r in s.Refs) Assert.Equal(Gtf.permit_access, Entry(DomU, r).Flags);
        Assert.Equal(0, P0.MappingCount);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 2));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD02_SecondMmapOfSameMap_IsEinval()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED));
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, Page, Posix.PROT_READ, Posix.MAP_SHARED));
        Assert.Equal(1, Dom0.Domain.MapTrackInUse);
        Assert.Equal(0, P0.Munmap(da, Page));
        // still in use after munmap (the map stays consumed until UNMAP_GRANT_REF)
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD02_ReadOnlyFirstMmap_MapsReadOnly()
    {
        var s = Share(1);
        Mem(s.Addr, Page)[7] = 0x42;
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, Page, Posix.PROT_READ, Posix.MAP_SHARED);
        Assert.True(da > 0, da.ToString());
        Assert.Equal(Gtf.permit_access | Gtf.reading, Entry(DomU, s.Refs[0]).Flags);   // no GTF_writing
        Assert.Equal(0x42, Mem(da, Page)[7]);
        Mem(s.Addr, Page)[8] = 0x43;
        Assert.Equal(0x43, Mem(da, Page)[8]);
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(Gtf.permit_access | Gtf.reading, Entry(DomU, s.Refs[0]).Flags);   // GD03: still mapped (Arm)
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(Gtf.permit_access, Entry(DomU, s.Refs[0]).Flags);
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
    }

    [Fact]
    public void GD02_WritableFirstMmap_MapsWritable()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0, da.ToString());
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, s.Refs[0]).Flags);
        Mem(da, Page)[100] = 0x99;
        Assert.Equal(0x99, Mem(s.Addr, Page)[100]);
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
    }

    [Fact]
    public void GD02_WritableMmapOfReadOnlyGrant_IsEinval_ReadOnlyWorks()
    {
        var s = Share(1, writable: false);
        Assert.Equal(Gtf.permit_access | Gtf.@readonly, Entry(DomU, s.Refs[0]).Flags);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED));
        Assert.Equal(Gtf.permit_access | Gtf.@readonly, Entry(DomU, s.Refs[0]).Flags);
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));

        ulong off2 = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off2, Page, Posix.PROT_READ, Posix.MAP_SHARED);
        Assert.True(da > 0, da.ToString());
        Assert.Equal(Gtf.permit_access | Gtf.@readonly | Gtf.reading, Entry(DomU, s.Refs[0]).Flags);
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off2, 1));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD02_OneBadGrantAmongGood_IsEinval_GoodOnesUnmappedAgain()
    {
        var s = Share(2);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0], 4000, s.Refs[1]);
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off, 3 * Page, RW, Posix.MAP_SHARED));
        foreach (var r in s.Refs) Assert.Equal(Gtf.permit_access, Entry(DomU, r).Flags);
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        Assert.Equal(0, DomU.Domain.GrantTable.ActivePins);
        Assert.Equal(0, P0.MappingCount);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 3));

        // a grant given to another domain fails the same way
        ulong off2 = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0], s.Refs[1]);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off2, 2));
        ulong off3 = MapGrantRefs(P0, gd, new DomainId(77), s.Refs[0]);   // unknown granter
        Assert.Equal(-Errno.EINVAL, P0.Mmap(gd, (long)off3, Page, RW, Posix.MAP_SHARED));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off3, 1));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    // ------------------------------------------------------------------ GD03

    [Fact]
    public void GD03_UnmapUnknownIndexOrCount_IsEnoent()
    {
        var s = Share(2);
        int gd = Open(P0, "/dev/xen/gntdev");
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, 0, 1));            // fresh file
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, off + 2 * Page, 2)); // no map there
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, off + Page, 1));     // inside, not at start
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, off, 1));            // wrong count
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, off, 3));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 2));
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, off, 2));            // already gone
        ulong off2 = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off2, 0));                       // count 0 matches any
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD03_GrantsUnmappedWhenLastMmapGoes()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        // still mapped and working while the mmap lives
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, s.Refs[0]).Flags);
        Mem(da, Page)[1] = 0x11;
        Assert.Equal(0x11, Mem(s.Addr, Page)[1]);
        Assert.Equal(1, Dom0.Domain.MapTrackInUse);
        // the offset is free again for a new map
        Assert.Equal(-Errno.ENOENT, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(Gtf.permit_access, Entry(DomU, s.Refs[0]).Flags);
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
    }

    // ------------------------------------------------------------------ GD04

    private static int GetOffset(GuestProcess p, int fd, long vaddr, out ulong offset, out uint count)
    {
        var arg = Bytes(new ioctl_gntdev_get_offset_for_vaddr { vaddr = (ulong)vaddr, offset = 0xdead, count = 0xbeef });
        int rc = p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR, arg);
        var o = Read<ioctl_gntdev_get_offset_for_vaddr>(arg);
        offset = o.offset;
        count = o.count;
        return rc;
    }

    [Fact]
    public void GD04_NonGntdevAddress_IsEinval()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        long anon = P0.Mmap(-1, 0, Page, RW, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(anon > 0);
        Assert.Equal(-Errno.EINVAL, GetOffset(P0, gd, anon, out _, out _));
        Assert.Equal(-Errno.EINVAL, GetOffset(P0, gd, 0x1000, out _, out _));
        Assert.Equal(-Errno.EINVAL, GetOffset(P0, gd, 0, out _, out _));
        // a gntalloc mapping is not a gntdev mapping
        int ga = Open(P0, "/dev/xen/gntalloc");
        var (gi, _) = AllocGrefs(P0, ga, DomU.Id, 1);
        long gaddr = P0.Mmap(ga, (long)gi, Page, RW, Posix.MAP_SHARED);
        Assert.True(gaddr > 0);
        Assert.Equal(-Errno.EINVAL, GetOffset(P0, gd, gaddr, out _, out _));
        // a mapping of another gntdev file is not this file's
        int gd2 = Open(P0, "/dev/xen/gntdev");
        ulong off2 = MapGrantRefs(P0, gd2, DomU.Id, s.Refs);
        long da2 = P0.Mmap(gd2, (long)off2, Page, RW, Posix.MAP_SHARED);
        Assert.True(da2 > 0);
        Assert.Equal(-Errno.EINVAL, GetOffset(P0, gd, da2, out _, out _));
        Assert.Equal(0, GetOffset(P0, gd2, da2, out _, out _));
        // after munmap the address is no longer a gntdev mapping
        Assert.Equal(0, P0.Munmap(da2, Page));
        Assert.Equal(-Errno.EINVAL, GetOffset(P0, gd2, da2, out _, out _));

        Assert.Equal(0, P0.Munmap(gaddr, Page));
        Assert.Equal(0, P0.Munmap(anon, Page));
        Assert.Equal(0, P0.Close(ga));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(gd2));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD04_ReturnsOffsetAndCount()
    {
        var s = Share(3);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong a = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0]);
        ulong b = MapGrantRefs(P0, gd, DomU.Id, s.Refs[1], s.Refs[2]);
        long db = P0.Mmap(gd, (long)b, 2 * Page, RW, Posix.MAP_SHARED);
        Assert.True(db > 0);
        Assert.Equal(0, GetOffset(P0, gd, db, out ulong o, out uint c));
        Assert.Equal(b, o);
        Assert.Equal(2u, c);
        Assert.Equal(0, GetOffset(P0, gd, db + Page + 123, out o, out c));
        Assert.Equal(b, o);
        Assert.Equal(2u, c);
        Assert.Equal(-Errno.EINVAL, GetOffset(P0, gd, db + 2 * Page, out _, out _));   // just past the end
        Assert.Equal(0, P0.Munmap(db, 2 * Page));
        Assert.Equal(0, UnmapGrantRef(P0, gd, a, 1));
        Assert.Equal(0, UnmapGrantRef(P0, gd, b, 2));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
    }

    // ------------------------------------------------------------------ GD05 / GD08

    [Fact]
    public void GD05_SetMaxGrants_IsEnotty()
    {
        Assert.Equal(0x00044703u, GntDevIoctl.IOCTL_GNTDEV_SET_MAX_GRANTS);
        int gd = Open(P0, "/dev/xen/gntdev");
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_SET_MAX_GRANTS, Bytes(new ioctl_gntdev_set_max_grants { count = 128 })));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void GD08_UnknownIoctl_IsEnotty()
    {
        int gd = Open(P0, "/dev/xen/gntdev");
        var arg = new byte[64];
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(gd, 0x00004799, arg));
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(gd, EvtChnIoctl.IOCTL_EVTCHN_NOTIFY, arg));
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(gd, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg));   // 'G' 5: not gntdev's
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(gd, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, arg));
        Assert.Equal(-Errno.ENOTTY, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF + 0x10000, arg)); // size differs
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void GD08_SetUnmapNotifyNumberShared_EachDeviceHandlesItsOwn()
    {
        Assert.Equal(0x00104707u, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY);
        Assert.Equal(0x00104707u, GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY);
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        int ga = Open(P0, "/dev/xen/gntalloc");
        var (gi, _) = AllocGrefs(P0, ga, DomU.Id, 3);             // gntalloc offsets 0..2 pages
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);       // gntdev offset 0, one page
        Assert.Equal(0UL, gi);
        Assert.Equal(0UL, off);
        // offset 2 pages exists only on gntalloc
        Assert.Equal(-Errno.ENOENT, SetNotify(P0, gd, 2 * Page, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(0, SetNotify(P0, ga, 2 * Page, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        // offset 0 exists on both; on gntdev, CLEAR_BYTE is allowed before any mmap (not read-only yet)
        Assert.Equal(0, SetNotify(P0, gd, 0, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(0, SetNotify(P0, ga, 0, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        // gntalloc with nothing there
        Assert.Equal(-Errno.ENOENT, SetNotify(P0, ga, 5 * Page, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(ga));
        Unshare(s);
        AssertNoLeaks();
    }

    // ------------------------------------------------------------------ GD06

    [Fact]
    public void GD06_BadActionBits_IsEinval()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off, 4));
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | 8));
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off + 99 * Page, 0x80000000)); // bad action beats unknown offset
        Assert.Equal(0, SetNotify(P0, gd, off, 0));                                   // no action is fine
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD06_OffsetNotInAnyMap_IsEnoent()
    {
        var s = Share(2);
        int gd = Open(P0, "/dev/xen/gntdev");
        Assert.Equal(-Errno.ENOENT, SetNotify(P0, gd, 0, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));   // no map at all
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(-Errno.ENOENT, SetNotify(P0, gd, off + 2 * Page, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(-Errno.ENOENT, SetNotify(P0, gd, off + 100 * Page + 5, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(0, SetNotify(P0, gd, off + 2 * Page - 1, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE)); // last byte
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 2));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD06_ClearByteOnReadOnlyMap_IsEinval()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, Page, Posix.PROT_READ, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off + 10, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        var ch = Channel();
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off + 10, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, ch.Port0));
        Assert.Equal(0, SetNotify(P0, gd, off + 10, GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, ch.Port0));   // an event alone is fine
        Mem(s.Addr, Page)[10] = 0x5c;
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(0x5c, Mem(s.Addr, Page)[10]);   // nothing was cleared
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(ch.PortU, ReadPort(PU, ch.EvU));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(ch.Ev0));
        Assert.Equal(0, PU.Close(ch.EvU));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD06_UnknownEventPort_IsEinval()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off, GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, 77));
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off, GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, 0));
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off, GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, 5000));
        // a port bound in the other domain's evtchn is not one of this kernel's
        int evU = Open(PU, "/dev/xen/evtchn");
        int portU = PU.Ioctl(evU, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Bytes(new ioctl_evtchn_bind_unbound_port { remote_domain = 0 }));
        Assert.True(portU > 0);
        Assert.False(Xen.EventChannels.IsBound(Dom0.Domain, (uint)portU));
        Assert.Equal(-Errno.EINVAL, SetNotify(P0, gd, off, GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, (uint)portU));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, PU.Close(evU));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD06_ClearByteAtFinalUnmap_VisibleToGranter()
    {
        var s = Share(2);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, 2 * Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        var d = Mem(da, 2 * Page);
        d[Page + 100] = 0xaa;
        d[Page + 101] = 0xbb;
        Assert.Equal(0, SetNotify(P0, gd, off + Page + 100, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(0xaa, Mem(s.Addr, 2 * Page)[Page + 100]);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 2));
        Assert.Equal(0xaa, Mem(s.Addr, 2 * Page)[Page + 100]);   // not yet: the mmap still holds it
        Assert.Equal(0, P0.Munmap(da, 2 * Page));
        Assert.Equal(0, Mem(s.Addr, 2 * Page)[Page + 100]);
        Assert.Equal(0xbb, Mem(s.Addr, 2 * Page)[Page + 101]);
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
    }

    [Fact]
    public void GD06_SendEventAtFinalUnmap_PeerReadsPort()
    {
        var s = Share(1);
        var ch = Channel();
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Mem(da, Page)[3] = 0x33;
        Assert.Equal(0, SetNotify(P0, gd, off + 3, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, ch.Port0));
        Assert.Null(ReadPort(PU, ch.EvU));
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(ch.PortU, ReadPort(PU, ch.EvU));
        Assert.Null(ReadPort(PU, ch.EvU));
        Assert.Equal(0, Mem(s.Addr, Page)[3]);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(ch.Ev0));
        Assert.Equal(0, PU.Close(ch.EvU));
        Unshare(s);
    }

    [Fact]
    public void GD06_SendEventWithoutMmap_SentWhenMapGoes()
    {
        var s = Share(1);
        var ch = Channel();
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        Assert.Equal(0, SetNotify(P0, gd, off, GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, ch.Port0));
        Assert.Equal(0, P0.Close(gd));   // GD09: the unmmapped map goes at close
        Assert.Equal(ch.PortU, ReadPort(PU, ch.EvU));
        Assert.Equal(0, P0.Close(ch.Ev0));
        Assert.Equal(0, PU.Close(ch.EvU));
        Unshare(s);
    }

    [Fact]
    public void GD06_NewNotifyReplacesOld()
    {
        var s = Share(1);
        var ch = Channel();
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        long da = P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Mem(da, Page)[10] = 1;
        Mem(da, Page)[20] = 2;
        Assert.Equal(0, SetNotify(P0, gd, off + 10, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, ch.Port0));
        Assert.Equal(0, SetNotify(P0, gd, off + 20, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(1, Mem(s.Addr, Page)[10]);      // old notify forgotten
        Assert.Equal(0, Mem(s.Addr, Page)[20]);
        Assert.Null(ReadPort(PU, ch.EvU));            // no event: the new notify has none
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(ch.Ev0));
        Assert.Equal(0, PU.Close(ch.EvU));
        Unshare(s);
    }

    // ------------------------------------------------------------------ GD07

    private const int SegSize = 24;

    private static void WriteSeg(Span<byte> segs, int i, ulong src, ulong dst, ushort len, ushort flags)
    {
        var seg = segs.Slice(i * SegSize, SegSize);
        seg.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(seg, src);
        BinaryPrimitives.WriteUInt64LittleEndian(seg[8..], dst);
        BinaryPrimitives.WriteUInt16LittleEndian(seg[16..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(seg[18..], flags);
        BinaryPrimitives.WriteInt16LittleEndian(seg[20..], 0x7777);
    }

    private static ulong Foreign(uint gref, ushort offset, ushort domid) => gref | (ulong)offset << 32 | (ulong)domid << 48;

    private static short Status(Span<byte> segs, int i) => BinaryPrimitives.ReadInt16LittleEndian(segs[(i * SegSize + 20)..]);

    private static int Copy(GuestProcess p, int fd, uint count, long segments)
    {
        var arg = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(arg, count);
        BinaryPrimitives.WriteUInt64LittleEndian(arg.AsSpan(8), (ulong)segments);
        return p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY, arg);
    }

    [Fact]
    public void GD07_BothSidesLocal_IsEinval()
    {
        int gd = Open(P0, "/dev/xen/gntdev");
        long mem = P0.Mmap(-1, 0, 2 * Page, RW, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(mem > 0);
        var segs = Mem(mem, Page);
        WriteSeg(segs, 0, (ulong)mem + Page, (ulong)mem + Page + 100, 10, 0);
        Assert.Equal(-Errno.EINVAL, Copy(P0, gd, 1, mem));
        Assert.Equal(0, P0.Munmap(mem, 2 * Page));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void GD07_ForeignOffsetPlusLenOver4096_IsEinval()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        long mem = P0.Mmap(-1, 0, 2 * Page, RW, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(mem > 0);
        var segs = Mem(mem, Page);
        ulong local = (ulong)mem + Page;
        WriteSeg(segs, 0, Foreign(s.Refs[0], 4000, DomU.Id.Value), local, 97, GntCopy.source_gref);
        Assert.Equal(-Errno.EINVAL, Copy(P0, gd, 1, mem));
        WriteSeg(segs, 0, local, Foreign(s.Refs[0], 1, DomU.Id.Value), 4096, GntCopy.dest_gref);
        Assert.Equal(-Errno.EINVAL, Copy(P0, gd, 1, mem));
        // exactly 4096 is fine
        WriteSeg(segs, 0, Foreign(s.Refs[0], 4000, DomU.Id.Value), local, 96, GntCopy.source_gref);
        Assert.Equal(0, Copy(P0, gd, 1, mem));
        Assert.Equal(GntSt.okay, Status(segs, 0));
        Assert.Equal(0, P0.Munmap(mem, 2 * Page));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD07_CopiesRealDataBothWays()
    {
        var s = Share(2);
        var u = Mem(s.Addr, 2 * Page);
        for (int i = 0; i < 2 * Page; i++) u[i] = (byte)(i * 7 + 3);
        int gd = Open(P0, "/dev/xen/gntdev");
        long mem = P0.Mmap(-1, 0, 4 * Page, RW, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(mem > 0);
        var segs = Mem(mem, Page);
        var local = Mem(mem + Page, 3 * Page);
        // foreign -> local: a whole page, and a part of page 1 into a local range crossing a page boundary
        WriteSeg(segs, 0, Foreign(s.Refs[0], 0, DomU.Id.Value), (ulong)mem + Page, 4096, GntCopy.source_gref);
        WriteSeg(segs, 1, Foreign(s.Refs[1], 50, DomU.Id.Value), (ulong)mem + 3 * Page - 100, 300, GntCopy.source_gref);
        Assert.Equal(0, Copy(P0, gd, 2, mem));
        Assert.Equal(GntSt.okay, Status(segs, 0));
        Assert.Equal(GntSt.okay, Status(segs, 1));
        Assert.True(local[..Page].SequenceEqual(u[..Page]));
        Assert.True(local.Slice(2 * Page - 100, 300).SequenceEqual(u.Slice(Page + 50, 300)));

        // local -> foreign
        for (int i = 0; i < 200; i++) local[i] = (byte)(0xf0 ^ i);
        WriteSeg(segs, 0, (ulong)mem + Page, Foreign(s.Refs[1], 3000, DomU.Id.Value), 200, GntCopy.dest_gref);
        Assert.Equal(0, Copy(P0, gd, 1, mem));
        Assert.Equal(GntSt.okay, Status(segs, 0));
        Assert.True(u.Slice(Page + 3000, 200).SequenceEqual(local[..200]));
        // foreign -> foreign
        WriteSeg(segs, 0, Foreign(s.Refs[1], 3000, DomU.Id.Value), Foreign(s.Refs[0], 10, DomU.Id.Value), 200, GntCopy.source_gref | GntCopy.dest_gref);
        Assert.Equal(0, Copy(P0, gd, 1, mem));
        Assert.Equal(GntSt.okay, Status(segs, 0));
        Assert.True(u.Slice(10, 200).SequenceEqual(local[..200]));
        // copy pins only while copying
        Assert.Equal(Gtf.permit_access, Entry(DomU, s.Refs[0]).Flags);
        Assert.Equal(0, DomU.Domain.GrantTable.ActivePins);

        Assert.Equal(0, P0.Munmap(mem, 4 * Page));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
    }

    [Fact]
    public void GD07_PerSegmentStatus_IoctlReturnsZero()
    {
        var s = Share(1);
        var ro = Share(1, writable: false);
        int gd = Open(P0, "/dev/xen/gntdev");
        long mem = P0.Mmap(-1, 0, 2 * Page, RW, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(mem > 0);
        var segs = Mem(mem, Page);
        ulong local = (ulong)mem + Page;
        Mem(s.Addr, Page)[0] = 0x5a;
        WriteSeg(segs, 0, Foreign(s.Refs[0], 0, DomU.Id.Value), local, 16, GntCopy.source_gref);                 // okay
        WriteSeg(segs, 1, Foreign(30000, 0, DomU.Id.Value), local, 16, GntCopy.source_gref);                     // beyond the table
        WriteSeg(segs, 2, Foreign(s.Refs[0], 0, 77), local, 16, GntCopy.source_gref);                            // unknown domain
        WriteSeg(segs, 3, local, Foreign(ro.Refs[0], 0, DomU.Id.Value), 16, GntCopy.dest_gref);                  // write to RO grant
        WriteSeg(segs, 4, Foreign(ro.Refs[0], 0, DomU.Id.Value), local, 16, GntCopy.source_gref);                // read of RO grant: okay
        WriteSeg(segs, 5, Foreign(400, 0, DomU.Id.Value), local, 16, GntCopy.source_gref);                       // in the table, not granted
        WriteSeg(segs, 6, Foreign(s.Refs[0], 0, DomU.Id.Value), local, 0, GntCopy.source_gref);                  // len 0
        Assert.Equal(0, Copy(P0, gd, 7, mem));
        Assert.Equal(GntSt.okay, Status(segs, 0));
        Assert.Equal(GntSt.bad_gntref, Status(segs, 1));
        Assert.Equal(GntSt.bad_domain, Status(segs, 2));
        Assert.Equal(GntSt.general_error, Status(segs, 3));
        Assert.Equal(GntSt.okay, Status(segs, 4));
        Assert.Equal(GntSt.general_error, Status(segs, 5));
        Assert.Equal(GntSt.okay, Status(segs, 6));
        Assert.Equal(0, Mem(ro.Addr, Page)[0]);      // nothing written through the RO grant
        Assert.Equal(0, P0.Munmap(mem, 2 * Page));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        Unshare(ro);
        AssertNoLeaks();
    }

    [Fact]
    public void GD07_SegmentsNotInProcessMemory_IsEfault()
    {
        var s = Share(1);
        int gd = Open(P0, "/dev/xen/gntdev");
        Assert.Equal(-Errno.EFAULT, Copy(P0, gd, 1, 0x1000));
        Assert.Equal(-Errno.EFAULT, Copy(P0, gd, 1, 0));
        // a real .NET buffer is not process memory either
        var managed = GC.AllocateArray<byte>(SegSize, pinned: true);
        WriteSeg(managed, 0, Foreign(s.Refs[0], 0, DomU.Id.Value), 0x2000, 16, GntCopy.source_gref);
        unsafe
        {
            fixed (byte* p = managed) Assert.Equal(-Errno.EFAULT, Copy(P0, gd, 1, (long)p));
        }
        // segments in memory but the local buffer is not
        long mem = P0.Mmap(-1, 0, Page, RW, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(mem > 0);
        WriteSeg(Mem(mem, Page), 0, Foreign(s.Refs[0], 0, DomU.Id.Value), 0x2000, 16, GntCopy.source_gref);
        Assert.Equal(-Errno.EFAULT, Copy(P0, gd, 1, mem));
        // segment array running past the end of the mapping: segment 0 (valid, the last bytes of the
        // mapping) runs, segment 1 faults on copy-in, as Linux copies segment by segment
        WriteSeg(Mem(mem, Page)[(Page - SegSize)..], 0, Foreign(s.Refs[0], 0, DomU.Id.Value), (ulong)mem + 64, 16, GntCopy.source_gref);
        Assert.Equal(-Errno.EFAULT, Copy(P0, gd, 2, mem + Page - SegSize));
        Assert.Equal(GntSt.okay, MemoryMarshal.Read<short>(Mem(mem, Page)[(Page - SegSize + 20)..]));
        Assert.Equal(0, P0.Munmap(mem, Page));
        Assert.Equal(0, P0.Close(gd));
        Unshare(s);
        AssertNoLeaks();
    }

    // ------------------------------------------------------------------ GD09

    [Fact]
    public void GD09_CloseUnmapsMapsNotHeldByMmap()
    {
        var s = Share(2);
        int gd = Open(P0, "/dev/xen/gntdev");
        MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        MapGrantRefs(P0, gd, DomU.Id, s.Refs[1]);
        ulong off3 = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0]);
        long da = P0.Mmap(gd, (long)off3, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Assert.Equal(0, P0.Munmap(da, Page));      // mmapped once, unmapped, still on the list
        Assert.Equal(0, P0.Close(gd));
        foreach (var r in s.Refs) Assert.Equal(Gtf.permit_access, Entry(DomU, r).Flags);
        Unshare(s);
        AssertNoLeaks();
    }

    [Fact]
    public void GD09_MmappedMapKeepsWorkingAfterCloseUntilMunmap()
    {
        var s = Share(2);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, s.Refs);
        ulong other = MapGrantRefs(P0, gd, DomU.Id, s.Refs[0]);   // not mmapped: goes at close
        Assert.NotEqual(off, other);
        long da = P0.Mmap(gd, (long)off, 2 * Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(-Errno.EBADF, UnmapGrantRef(P0, gd, off, 2));
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, s.Refs[1]).Flags);
        Assert.Equal(2, Dom0.Domain.MapTrackInUse);
        Mem(da, 2 * Page)[Page + 9] = 0x19;
        Assert.Equal(0x19, Mem(s.Addr, 2 * Page)[Page + 9]);
        Mem(s.Addr, 2 * Page)[9] = 0x91;
        Assert.Equal(0x91, Mem(da, 2 * Page)[9]);
        Assert.Equal(0, P0.Munmap(da, 2 * Page));
        foreach (var r in s.Refs) Assert.Equal(Gtf.permit_access, Entry(DomU, r).Flags);
        Unshare(s);
        AssertNoLeaks();
    }
}
