using System.Buffers.Binary;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>gntalloc (GA01-GA03) through the byte-level ioctl path: domU shares, dom0 maps with gntdev.</summary>
public sealed class GntAllocTests : EmulatorTest
{
    private const int RW = Posix.PROT_READ | Posix.PROT_WRITE;
    private const int Page = 4096;

    private static Span<byte> Mem(long addr, int len) => GuestMemory.AsSpan(addr, len);

    private static int Dealloc(GuestProcess p, int fd, ulong index, uint count) =>
        p.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Bytes(new ioctl_gntalloc_dealloc_gref { index = index, count = count }));

    private static int SetNotify(GuestProcess p, int fd, ulong index, uint action, uint port = 0) =>
        p.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, Bytes(new ioctl_gntalloc_unmap_notify { index = index, action = action, event_channel_port = port }));

    private static int AllocRc(GuestProcess p, int fd, DomainId to, int count, bool writable = true) =>
        p.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, AllocGrefArg(to, count, writable));

    // ------------------------------------------------------------------ GA01

    [Fact]
    public void GA01_IndexReturned_RefsFrom8_PagesZeroed()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (i1, r1) = AllocGrefs(PU, ga, Dom0.Id, 2);
        var (i2, r2) = AllocGrefs(PU, ga, Dom0.Id, 3);
        Assert.Equal(0UL, i1);
        Assert.Equal(2UL * Page, i2);
        var all = r1.Concat(r2).ToArray();
        Assert.All(all, r => Assert.True(r >= 8, $"ref {r} is reserved"));
        Assert.Equal(all.Length, all.Distinct().Count());
        Assert.Equal(5, DomU.Kernel.GrantRefsInUse);

        long a = PU.Mmap(ga, (long)i1, 2 * Page, RW, Posix.MAP_SHARED);
        Assert.True(a > 0);
        Assert.True(Mem(a, 2 * Page).IndexOfAnyExcept((byte)0) < 0);
        Mem(a, 2 * Page).Fill(0xee);
        Assert.Equal(0, PU.Munmap(a, 2 * Page));
        Assert.Equal(0, Dealloc(PU, ga, i1, 2));

        // the freed pages come back zeroed
        int ramFree = DomU.Kernel.Ram.FreeCount;
        var (i3, _) = AllocGrefs(PU, ga, Dom0.Id, 2);
        Assert.Equal(5UL * Page, i3);                           // the offset keeps growing
        Assert.Equal(ramFree - 2, DomU.Kernel.Ram.FreeCount);
        long b = PU.Mmap(ga, (long)i3, 2 * Page, RW, Posix.MAP_SHARED);
        Assert.True(b > 0);
        Assert.True(Mem(b, 2 * Page).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0, PU.Munmap(b, 2 * Page));
        Assert.Equal(0, PU.Close(ga));
    }

    [Fact]
    public void GA01_ReadOnlyUnlessWritable()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (_, ro) = AllocGrefs(PU, ga, Dom0.Id, 2, writable: false);
        var (_, rw) = AllocGrefs(PU, ga, Dom0.Id, 2, writable: true);
        foreach (var r in ro)
        {
            var e = Entry(DomU, r);
            Assert.Equal(Gtf.permit_access | Gtf.@readonly, e.Flags);
            Assert.Equal(Dom0.Id.Value, e.DomId);
        }
        foreach (var r in rw)
        {
            var e = Entry(DomU, r);
            Assert.Equal(Gtf.permit_access, e.Flags);
            Assert.Equal(Dom0.Id.Value, e.DomId);
        }
        // unknown flag bits are ignored
        var arg = AllocGrefArg(Dom0.Id, 1, writable: false);
        BinaryPrimitives.WriteUInt16LittleEndian(arg.AsSpan(2), 0xfffe);
        Assert.Equal(0, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg));
        Assert.Equal(Gtf.permit_access | Gtf.@readonly, Entry(DomU, BinaryPrimitives.ReadUInt32LittleEndian(arg.AsSpan(16))).Flags);
        Assert.Equal(0, PU.Close(ga));
    }

    [Fact]
    public void GA01_CountZero_Succeeds()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var arg = AllocGrefArg(Dom0.Id, 0, writable: true);
        Assert.Equal(0, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg));
        Assert.Equal(0UL, MemoryMarshal.Read<ulong>(arg.AsSpan(8)));
        Assert.Equal(0, DomU.Kernel.GrantRefsInUse);
        var (i, _) = AllocGrefs(PU, ga, Dom0.Id, 1);
        Assert.Equal(0UL, i);                                    // count 0 did not advance the offset
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }

    [Fact]
    public void GA01_UnknownDomid_Succeeds()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (_, refs) = AllocGrefs(PU, ga, new DomainId(0x7fe0), 1);
        Assert.Equal(0x7fe0, Entry(DomU, refs[0]).DomId);
        Assert.Equal(0, PU.Close(ga));
    }

    [Fact]
    public void GA01_OverLimit_IsEnospc_NothingLeaked()
    {
        Assert.Equal(1024, new KernelOptions().GntAllocLimit);
        int ga = Open(PU, "/dev/xen/gntalloc");
        int gb = Open(PU, "/dev/xen/gntalloc");
        int ramFree = DomU.Kernel.Ram.FreeCount;
        var (ia, _) = AllocGrefs(PU, ga, Dom0.Id, 1000);
        // the limit is global over every file
        Assert.Equal(-Errno.ENOSPC, AllocRc(PU, gb, Dom0.Id, 25));
        Assert.Equal(-Errno.ENOSPC, AllocRc(PU, ga, Dom0.Id, 25));
        Assert.Equal(1000, DomU.Kernel.GrantRefsInUse);
        Assert.Equal(ramFree - 1000, DomU.Kernel.Ram.FreeCount);
        var (ib, _) = AllocGrefs(PU, gb, Dom0.Id, 24);          // exactly the limit
        Assert.Equal(0UL, ib);                                   // a refused alloc did not advance the offset
        Assert.Equal(-Errno.ENOSPC, AllocRc(PU, gb, Dom0.Id, 1));

        // a deallocated gref still held by its mmap counts; once unused it does not
        long a = PU.Mmap(ga, (long)ia, Page, RW, Posix.MAP_SHARED);
        Assert.True(a > 0);
        Assert.Equal(0, Dealloc(PU, ga, ia, 1000));
        Assert.Equal(-Errno.ENOSPC, AllocRc(PU, ga, Dom0.Id, 1000));
        var (ic, _) = AllocGrefs(PU, ga, Dom0.Id, 999);
        Assert.Equal(1000UL * Page, ic);
        Assert.Equal(0, PU.Munmap(a, Page));
        var (id, _) = AllocGrefs(PU, gb, Dom0.Id, 1);
        Assert.Equal(24UL * Page, id);
        Assert.Equal(-Errno.ENOSPC, AllocRc(PU, gb, Dom0.Id, 1));

        Assert.Equal(0, PU.Close(ga));
        Assert.Equal(0, PU.Close(gb));
        AssertNoLeaks();
    }

    // ------------------------------------------------------------------ GA02

    [Fact]
    public void GA02_DeallocOfNonExistentRange_IsEinval()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        Assert.Equal(-Errno.EINVAL, Dealloc(PU, ga, 0, 1));     // fresh file
        var (i, _) = AllocGrefs(PU, ga, Dom0.Id, 2);
        var (j, _) = AllocGrefs(PU, ga, Dom0.Id, 1);
        Assert.Equal(-Errno.EINVAL, Dealloc(PU, ga, i, 4));      // runs past the end
        Assert.Equal(-Errno.EINVAL, Dealloc(PU, ga, i + 100, 1)); // not page aligned
        Assert.Equal(-Errno.EINVAL, Dealloc(PU, ga, j + Page, 1)); // after the last
        Assert.Equal(-Errno.EINVAL, Dealloc(PU, ga, i, 0));      // count 0 (Linux's find_grefs never matches)
        Assert.Equal(3, DomU.Kernel.GrantRefsInUse);
        Assert.Equal(0, Dealloc(PU, ga, i + Page, 2));           // a run may span two allocations
        Assert.Equal(-Errno.EINVAL, Dealloc(PU, ga, i + Page, 1)); // already gone
        Assert.Equal(-Errno.EINVAL, Dealloc(PU, ga, i, 2));       // now shorter
        Assert.Equal(0, Dealloc(PU, ga, i, 1));
        Assert.Equal(0, DomU.Kernel.GrantRefsInUse);
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }

    [Fact]
    public void GA02_DeallocDoesNotTouchOtherFiles()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        int gb = Open(PU, "/dev/xen/gntalloc");
        AllocGrefs(PU, ga, Dom0.Id, 1);
        Assert.Equal(-Errno.EINVAL, Dealloc(PU, gb, 0, 1));
        Assert.Equal(1, DomU.Kernel.GrantRefsInUse);
        Assert.Equal(0, PU.Close(ga));
        Assert.Equal(0, PU.Close(gb));
        AssertNoLeaks();
    }

    [Fact]
    public void GA02_DeallocatedGrefStaysGrantedUntilOwnMmapAndPeerMappingGone()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (idx, refs) = AllocGrefs(PU, ga, Dom0.Id, 1);
        long ua = PU.Mmap(ga, (long)idx, Page, RW, Posix.MAP_SHARED);
        Assert.True(ua > 0);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, refs);
        long da = P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        int ramFree = DomU.Kernel.Ram.FreeCount;

        Assert.Equal(0, Dealloc(PU, ga, idx, 1));
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, refs[0]).Flags);
        Mem(da, Page)[0] = 0x10;
        Assert.Equal(0x10, Mem(ua, Page)[0]);
        Assert.Equal(0, DomU.Kernel.DeferredReclaims);

        Assert.Equal(0, PU.Munmap(ua, Page));                    // own mmap gone, peer still maps
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(DomU, refs[0]).Flags);
        Assert.Equal(1, DomU.Kernel.DeferredReclaims);
        Assert.Equal(1, DomU.Kernel.GrantRefsInUse);
        Assert.Equal(ramFree, DomU.Kernel.Ram.FreeCount);        // page not freed yet
        Mem(da, Page)[1] = 0x11;                                  // still working for the peer
        Assert.Equal(0x10, Mem(da, Page)[0]);
        Assert.Equal(0x11, Mem(da, Page)[1]);

        Assert.Equal(0, P0.Munmap(da, Page));                     // GD03 (Arm): the peer's grant stays mapped
        Assert.Equal(1, DomU.Kernel.DeferredReclaims);
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));           // peer gone: access ended, page freed
        Assert.Equal(Gtf.invalid, Entry(DomU, refs[0]).Flags);
        Assert.Equal(0, DomU.Kernel.DeferredReclaims);
        Assert.Equal(0, DomU.Kernel.GrantRefsInUse);
        Assert.Equal(ramFree + 1, DomU.Kernel.Ram.FreeCount);

        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }

    [Fact]
    public void GA02_PeerUnmapsFirst_ThenOwnMunmapFreesAtOnce()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (idx, refs) = AllocGrefs(PU, ga, Dom0.Id, 2);
        long ua = PU.Mmap(ga, (long)idx, 2 * Page, RW, Posix.MAP_SHARED);
        Assert.True(ua > 0);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, refs);
        long da = P0.Mmap(gd, (long)off, 2 * Page, Posix.PROT_READ, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Assert.Equal(0, Dealloc(PU, ga, idx, 2));
        Assert.Equal(0, P0.Munmap(da, 2 * Page));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(Gtf.permit_access, Entry(DomU, refs[0]).Flags);   // own mmap still holds it
        Assert.Equal(2, DomU.Kernel.GrantRefsInUse);
        Assert.Equal(0, PU.Munmap(ua, 2 * Page));
        Assert.Equal(0, DomU.Kernel.DeferredReclaims);
        foreach (var r in refs) Assert.Equal(Gtf.invalid, Entry(DomU, r).Flags);
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }

    [Fact]
    public void GA02_CloseWhilePeerMaps_DefersUntilPeerUnmaps()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (_, refs) = AllocGrefs(PU, ga, Dom0.Id, 1);
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, refs);
        long da = P0.Mmap(gd, (long)off, Page, RW, Posix.MAP_SHARED);
        Assert.True(da > 0);
        Assert.Equal(0, PU.Close(ga));
        Assert.Equal(1, DomU.Kernel.DeferredReclaims);
        Assert.NotEqual(Gtf.invalid, Entry(DomU, refs[0]).Flags);
        Assert.Equal(0, P0.Close(gd));                            // mmap still holds the map
        Assert.Equal(1, DomU.Kernel.DeferredReclaims);
        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(0, DomU.Kernel.DeferredReclaims);
        Assert.Equal(Gtf.invalid, Entry(DomU, refs[0]).Flags);
        AssertNoLeaks();
    }

    // ------------------------------------------------------------------ GA03

    [Fact]
    public void GA03_SetUnmapNotifyUnknownOffset_IsEnoent()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        Assert.Equal(-Errno.ENOENT, SetNotify(PU, ga, 0, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        var (i, _) = AllocGrefs(PU, ga, Dom0.Id, 2);
        Assert.Equal(-Errno.ENOENT, SetNotify(PU, ga, i + 2 * Page, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(-Errno.ENOENT, SetNotify(PU, ga, i + 2 * Page, 0xff));   // ENOENT is checked before the action
        Assert.Equal(0, SetNotify(PU, ga, i + Page + 4095, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(0, Dealloc(PU, ga, i, 2));
        Assert.Equal(-Errno.ENOENT, SetNotify(PU, ga, i, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE));
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }

    [Fact]
    public void GA03_SetUnmapNotifyBadAction_IsEinval()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (i, _) = AllocGrefs(PU, ga, Dom0.Id, 1);
        Assert.Equal(-Errno.EINVAL, SetNotify(PU, ga, i, 4));
        Assert.Equal(-Errno.EINVAL, SetNotify(PU, ga, i, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | 0x100));
        Assert.Equal(-Errno.EINVAL, SetNotify(PU, ga, i, GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, 99)); // unknown port
        Assert.Equal(0, SetNotify(PU, ga, i, 0));
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }

    [Fact]
    public void GA03_MmapWithoutMapShared_IsEinval()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (i, _) = AllocGrefs(PU, ga, Dom0.Id, 1);
        Assert.Equal(-Errno.EINVAL, PU.Mmap(ga, (long)i, Page, RW, Posix.MAP_PRIVATE));
        Assert.Equal(-Errno.EINVAL, PU.Mmap(ga, (long)i, Page, Posix.PROT_READ, Posix.MAP_PRIVATE));
        Assert.Equal(0, PU.MappingCount);
        // not found -> ENOENT
        Assert.Equal(-Errno.ENOENT, PU.Mmap(ga, (long)i + Page, Page, RW, Posix.MAP_SHARED));
        Assert.Equal(-Errno.ENOENT, PU.Mmap(ga, (long)i, 2 * Page, RW, Posix.MAP_SHARED));
        long a = PU.Mmap(ga, (long)i, Page, Posix.PROT_READ, Posix.MAP_SHARED);
        Assert.True(a > 0);
        Assert.Equal(0, PU.Munmap(a, Page));
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }

    [Fact]
    public void GA03_NotifyAtLastUse_ClearsByteAndSendsEvent()
    {
        int evU = Open(PU, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        int portU = PU.Ioctl(evU, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Bytes(new ioctl_evtchn_bind_unbound_port { remote_domain = 0 }));
        Assert.True(portU > 0);
        int ev0 = Open(P0, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        int port0 = P0.Ioctl(ev0, EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, Bytes(new ioctl_evtchn_bind_interdomain { remote_domain = DomU.Id.Value, remote_port = (uint)portU }));
        Assert.True(port0 > 0);

        int ga = Open(PU, "/dev/xen/gntalloc");
        var (i, refs) = AllocGrefs(PU, ga, Dom0.Id, 1);
        long ua = PU.Mmap(ga, (long)i, Page, RW, Posix.MAP_SHARED);
        Assert.True(ua > 0);
        Mem(ua, Page)[77] = 0x77;
        int gd = Open(P0, "/dev/xen/gntdev");
        ulong off = MapGrantRefs(P0, gd, DomU.Id, refs);
        long da = P0.Mmap(gd, (long)off, Page, Posix.PROT_READ, Posix.MAP_SHARED);
        Assert.True(da > 0);

        Assert.Equal(0, SetNotify(PU, ga, i + 77, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, (uint)portU));
        Assert.Equal(0, Dealloc(PU, ga, i, 1));
        Assert.Equal(0x77, Mem(da, Page)[77]);
        var buf = new byte[4];
        Assert.Equal(-Errno.EAGAIN, P0.Read(ev0, buf));
        Assert.Equal(0, PU.Munmap(ua, Page));                     // last local use
        Assert.Equal(0, Mem(da, Page)[77]);                       // the peer sees the byte cleared
        Assert.Equal(4, P0.Read(ev0, buf));
        Assert.Equal((uint)port0, BinaryPrimitives.ReadUInt32LittleEndian(buf));

        Assert.Equal(0, P0.Munmap(da, Page));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, PU.Close(ga));
        Assert.Equal(0, P0.Close(ev0));
        Assert.Equal(0, PU.Close(evU));
    }

    [Fact]
    public void GA03_UnknownIoctl_IsEnotty()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var arg = new byte[64];
        Assert.Equal(-Errno.ENOTTY, PU.Ioctl(ga, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg));
        Assert.Equal(-Errno.ENOTTY, PU.Ioctl(ga, 0x00004799, arg));
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }
}

/// <summary>GA01 with the module parameter lowered (KernelOptions.GntAllocLimit).</summary>
public sealed class GntAllocLimitTests : EmulatorTest
{
    public GntAllocLimitTests() : base(null, new KernelOptions { GntAllocLimit = 4 }) { }

    [Fact]
    public void GA01_OverConfiguredLimit_IsEnospc()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        Assert.Equal(-Errno.ENOSPC, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, AllocGrefArg(Dom0.Id, 5, true)));
        Assert.Equal(0, DomU.Kernel.GrantRefsInUse);
        var (i, _) = AllocGrefs(PU, ga, Dom0.Id, 4);
        Assert.Equal(0UL, i);
        Assert.Equal(-Errno.ENOSPC, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, AllocGrefArg(Dom0.Id, 1, true)));
        Assert.Equal(0, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, AllocGrefArg(Dom0.Id, 0, true)));
        Assert.Equal(0, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Bytes(new ioctl_gntalloc_dealloc_gref { index = i, count = 4 })));
        var (j, _) = AllocGrefs(PU, ga, Dom0.Id, 4);
        Assert.Equal(4UL * 4096, j);
        Assert.Equal(0, PU.Close(ga));
        AssertNoLeaks();
    }
}
