using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Api;

namespace XenShare.Conformance;

/// <summary>gntdev basics (GD), gntalloc (GA), event channels (EV).</summary>
internal static class GntDevScenarios
{
    public static IEnumerable<ConformanceScenario> All()
    {
        yield return new("GD01", "map count limits and first-fit index", GD01);
        yield return new("GD02", "mmap rules", GD02);
        yield return new("GD03", "unmap of unknown map, grants live until the last mmap goes, munmap alone keeps them", GD03);
        yield return new("GD03/entries", "munmap alone leaves the grant mapped (reading|writing); UNMAP_GRANT_REF unmaps it", GD03Entries, DmaBufScenarios.EntriesReason);
        yield return new("GD04", "get offset for vaddr", GD04);
        yield return new("GD05+LG03", "set max grants is ENOTTY, the typed API takes it as success", GD05);
        yield return new("GD06", "set unmap notify errors and clear-byte at the final unmap", GD06);
        yield return new("GD07", "grant copy", GD07);
        yield return new("GD08", "unknown ioctl and the shared SET_UNMAP_NOTIFY number", GD08);
        yield return new("GD09", "closing gntdev keeps mmapped maps", GD09);
        yield return new("GA01+GT02", "alloc gref: zeroed pages, refs >= 8, read-only grants, limit", GA01);
        yield return new("GA02", "dealloc errors, deallocated grant lives while mapped", GA02);
        yield return new("GA03", "gntalloc set unmap notify errors and mmap rules", GA03);
        yield return new("EV01", "bind unbound + interdomain, notify, read pending, unmask", EV01);
        yield return new("EV02", "evtchn errors", EV02);
    }

    private static void GD01(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        int fd = Raw.Open(p, GrantDevice.Path);
        try
        {
            Check.Errno(Errno.EINVAL, p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, Raw.MapArg(c.Peer, [])), "MAP count 0");
            var big = new uint[Raw.GntDevLimit + 1];
            Array.Fill(big, g.Refs[0]);
            Check.Errno(Errno.EINVAL, p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, Raw.MapArg(c.Peer, big)), "MAP count limit+1");
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[0]], out ulong i1), "MAP 1");
            Check.Equal(0UL, i1, "first index on a fresh file");
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[1]], out ulong i2), "MAP 2");
            Check.Equal(4096UL, i2, "second index");
            Check.Ok(Raw.UnmapGrantRef(p, fd, i1, 1), "UNMAP 1");
            // Linux places a map in a hole only when index + count < the next map's index: a hole of
            // exactly the map's size is skipped (real Linux 6.1), so this one goes to the end.
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[0]], out ulong i3), "MAP 3");
            Check.Equal(8192UL, i3, "an exact-size hole is skipped");
            Check.Ok(Raw.UnmapGrantRef(p, fd, i2, 1), "UNMAP 2");
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[1]], out ulong i4), "MAP 4");
            Check.Equal(0UL, i4, "first fit in the 2-page hole");
            Check.Ok(Raw.UnmapGrantRef(p, fd, i3, 1), "UNMAP 3");
            Check.Ok(Raw.UnmapGrantRef(p, fd, i4, 1), "UNMAP 4");
        }
        finally { p.Close(fd); }
    }

    private static void GD02(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        g.Memory[5] = 0x5A;
        int fd = Raw.Open(p, GrantDevice.Path);
        try
        {
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[0]], out ulong idx), "MAP");
            Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE), "writable mmap without MAP_SHARED");
            Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)idx + 64 * Raw.Page, Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED), "mmap where no map is");
            Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)idx, 2 * Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED), "mmap longer than the map");
            long a = Check.Ok(p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED), "read-only mmap");
            Check.Equal((byte)0x5A, Raw.Mem(a, Raw.Page)[5], "data through the read-only mapping");
            Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED), "second mmap of one map");
            Check.Ok(p.Munmap(a, Raw.Page), "munmap");
            Check.Ok(Raw.UnmapGrantRef(p, fd, idx, 1), "UNMAP");

            // A grant that cannot be mapped makes the whole mmap fail.
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[1], 0xFFFF0u], out ulong bad), "MAP with a bad ref (nothing mapped yet)");
            Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)bad, 2 * Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "mmap with a bad ref");
            Check.Ok(Raw.UnmapGrantRef(p, fd, bad, 2), "UNMAP bad");
        }
        finally { p.Close(fd); }
    }

    private static void GD03(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        g.Memory[100] = 7;
        int fd = Raw.Open(p, GrantDevice.Path);
        try
        {
            Check.Errno(Errno.ENOENT, Raw.UnmapGrantRef(p, fd, 0, 1), "UNMAP with no map");
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[0]], out ulong idx), "MAP");
            Check.Errno(Errno.ENOENT, Raw.UnmapGrantRef(p, fd, idx, 2), "UNMAP with the wrong count");
            long a = Check.Ok(p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "mmap");
            Check.Ok(Raw.UnmapGrantRef(p, fd, idx, 1), "UNMAP while mmapped");
            Raw.Mem(a, Raw.Page)[101] = 8;
            Check.Equal((byte)7, Raw.Mem(a, Raw.Page)[100], "mapping still works after UNMAP");
            Check.Equal((byte)8, g.Memory[101], "peer sees the write");
            Check.Errno(Errno.ENOENT, Raw.UnmapGrantRef(p, fd, idx, 1), "second UNMAP");
            Check.Ok(p.Munmap(a, Raw.Page), "munmap (last user)");

            // munmap before UNMAP on an auto-translated domain (every backend of this suite: the emulator's
            // Arm domains, real Xen on Arm): the mapping's use goes, the grant stays mapped, the map stays
            // listed, its index cannot be mmapped again and the CLEAR_BYTE notify waits for UNMAP_GRANT_REF.
            g.Memory[200] = 0xEE;
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[0]], out ulong idx2), "MAP 2");
            long a2 = Check.Ok(p.Mmap(fd, (long)idx2, Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "mmap 2");
            Check.Ok(p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, Raw.Bytes(new ioctl_gntdev_unmap_notify { index = idx2 + 200, action = GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE })), "SET_UNMAP_NOTIFY CLEAR_BYTE");
            Check.Ok(p.Munmap(a2, Raw.Page), "munmap before UNMAP");
            Check.Equal((byte)0xEE, g.Memory[200], "notify byte kept at munmap (grant still mapped)");
            Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)idx2, Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "mmap the same index again");
            Check.Ok(Raw.UnmapGrantRef(p, fd, idx2, 1), "UNMAP after munmap (map still listed)");
            Check.Equal((byte)0, g.Memory[200], "notify byte cleared at UNMAP");
        }
        finally { p.Close(fd); }
    }

    private static void GD03Entries(ConformanceContext c, IEmulatorProbe probe)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        int fd = Raw.Open(p, GrantDevice.Path);
        try
        {
            Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[0]], out ulong idx), "MAP");
            long a = Check.Ok(p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "mmap");
            Check.Ok(p.Munmap(a, Raw.Page), "munmap before UNMAP");
            Check.Equal((ushort)(Gtf.permit_access | Gtf.reading | Gtf.writing), probe.GrantEntry(c.Peer, g.Refs[0]).Flags, "grant entry still mapped after munmap");
            Check.Ok(Raw.UnmapGrantRef(p, fd, idx, 1), "UNMAP");
            Check.Equal((ushort)Gtf.permit_access, probe.GrantEntry(c.Peer, g.Refs[0]).Flags, "grant entry unmapped at UNMAP");
        }
        finally { p.Close(fd); }
    }

    private static void GD04(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        using var dev = GrantDevice.Open(p);
        using var own = ProcessBuffer.Allocate(p, Raw.Page);
        var arg = Raw.Bytes(new ioctl_gntdev_get_offset_for_vaddr { vaddr = (ulong)own.Address });
        Check.Errno(Errno.EINVAL, p.Ioctl(dev.Fd, GntDevIoctl.IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR, arg), "offset for a non-gntdev address");
        using var m = dev.Map(c.Peer, [new GrantRef(g.Refs[0]), new GrantRef(g.Refs[1])]);
        arg = Raw.Bytes(new ioctl_gntdev_get_offset_for_vaddr { vaddr = (ulong)m.Address });
        Check.Ok(p.Ioctl(dev.Fd, GntDevIoctl.IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR, arg), "offset for the mapping");
        var r = MemoryMarshal.Read<ioctl_gntdev_get_offset_for_vaddr>(arg);
        Check.Equal(m.Index, r.offset, "offset");
        Check.Equal(2u, r.count, "count");
    }

    private static void GD05(ConformanceContext c)
    {
        using var dev = GrantDevice.Open(c.Process);
        Check.Errno(Errno.ENOTTY, c.Process.Ioctl(dev.Fd, GntDevIoctl.IOCTL_GNTDEV_SET_MAX_GRANTS, Raw.Bytes(new ioctl_gntdev_set_max_grants { count = 16 })), "SET_MAX_GRANTS");
        dev.SetMaxGrants(16); // LG03: no exception
    }

    private static void GD06(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        using var dev = GrantDevice.Open(p);
        int Notify(ulong index, uint action, uint port) =>
            p.Ioctl(dev.Fd, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, Raw.Bytes(new ioctl_gntdev_unmap_notify { index = index, action = action, event_channel_port = port }));
        using (var m = dev.Map(c.Peer, [new GrantRef(g.Refs[0])]))
        {
            Check.Errno(Errno.EINVAL, Notify(m.Index, 4, 0), "bad action bits");
            Check.Errno(Errno.ENOENT, Notify(m.Index + 64 * 4096, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE, 0), "offset in no map");
            Check.Errno(Errno.EINVAL, Notify(m.Index, GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT, 0xFFFF), "unknown event channel");
        }
        using (var ro = dev.Map(c.Peer, [new GrantRef(g.Refs[1])], writable: false))
            Check.Errno(Errno.EINVAL, Notify(ro.Index, GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE, 0), "CLEAR_BYTE on a read-only map");
        g.Memory[9] = 0xEE;
        g.Memory[10] = 0xEE;
        var w = dev.Map(c.Peer, [new GrantRef(g.Refs[0])]);
        w.SetUnmapNotify(9, UnmapNotify.ClearByte);
        w.SetUnmapNotify(10, UnmapNotify.ClearByte); // replaces the first
        Check.Equal((byte)0xEE, g.Memory[10], "byte before unmap");
        w.Dispose();
        Check.Equal((byte)0, g.Memory[10], "byte cleared at the final unmap");
        Check.Equal((byte)0xEE, g.Memory[9], "replaced notify not run");
    }

    private static void GD07(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(p);
        using var buf = ProcessBuffer.Allocate(p, Raw.Page);
        var statuses = new short[2];
        Check.Throws(Errno.EINVAL, () => dev.Copy([new GrantCopySegment(GrantCopyOperand.Local(buf.Address), GrantCopyOperand.Local(buf.Address + 8), 4)], statuses), "both sides local");
        Check.Throws(Errno.EINVAL, () => dev.Copy([new GrantCopySegment(GrantCopyOperand.Foreign(c.Peer, new GrantRef(g.Refs[0]), 4000), GrantCopyOperand.Local(buf.Address), 200)], statuses), "foreign offset+len > 4096");
        g.Memory[10] = 0x42;
        dev.Copy([
            new GrantCopySegment(GrantCopyOperand.Foreign(c.Peer, new GrantRef(g.Refs[0]), 10), GrantCopyOperand.Local(buf.Address), 1),
            new GrantCopySegment(GrantCopyOperand.Foreign(c.Peer, new GrantRef(0xFFFF0), 0), GrantCopyOperand.Local(buf.Address), 1),
        ], statuses);
        Check.Equal(GntSt.okay, statuses[0], "status of a good segment");
        Check.Equal(GntSt.bad_gntref, statuses[1], "status of a bad ref");
        Check.Equal((byte)0x42, buf.Memory.Span[0], "copied byte");
    }

    private static void GD08(ConformanceContext c)
    {
        var p = c.Process;
        int gd = Raw.Open(p, GrantDevice.Path);
        int ga = Raw.Open(p, GrantSharer.Path);
        try
        {
            Check.Errno(Errno.ENOTTY, p.Ioctl(gd, Ioc.Encode(Ioc.None, 'G', 99, 0), []), "unknown gntdev ioctl");
            Check.Equal(0x00104707u, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, "shared number");
            var arg = Raw.Bytes(new ioctl_gntdev_unmap_notify { index = 0, action = 1 });
            Check.Errno(Errno.ENOENT, p.Ioctl(gd, 0x00104707u, arg), "gntdev notify, no map");
            Check.Errno(Errno.ENOENT, p.Ioctl(ga, 0x00104707u, arg), "gntalloc notify, no gref");
        }
        finally
        {
            p.Close(gd);
            p.Close(ga);
        }
    }

    private static void GD09(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        g.Memory[4096 + 3] = 0x33;
        int fd = Raw.Open(p, GrantDevice.Path);
        Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[0]], out _), "MAP (never mmapped)");
        Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [g.Refs[1]], out ulong i2), "MAP");
        long a = Check.Ok(p.Mmap(fd, (long)i2, Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED), "mmap");
        Check.Ok(p.Close(fd), "close gntdev");
        Check.Equal((byte)0x33, Raw.Mem(a, Raw.Page)[3], "mmapped map survives the close");
        Check.Ok(p.Munmap(a, Raw.Page), "munmap");
    }

    private static void GA01(ConformanceContext c)
    {
        var p = c.PeerProcess;
        int ga = Raw.Open(p, GrantSharer.Path);
        try
        {
            Check.Ok(Raw.Alloc(p, ga, c.Self, 3, true, out ulong idx, out uint[] refs), "ALLOC 3");
            foreach (uint r in refs) Check.True(r >= 8, $"ref {r} >= 8 (GT02)");
            Check.Equal(3, refs.Distinct().Count(), "distinct refs");
            long a = Check.Ok(p.Mmap(ga, (long)idx, 3 * Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "mmap");
            Check.True(Raw.Mem(a, 3 * Raw.Page).IndexOfAnyExcept((byte)0) < 0, "pages zeroed");
            Check.Ok(p.Munmap(a, 3 * Raw.Page), "munmap");
            Check.Ok(Raw.Dealloc(p, ga, idx, 3), "DEALLOC");
            Check.Errno(Errno.ENOSPC, p.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, Raw.AllocArg(c.Self, Raw.GntAllocLimit + 1, true)), "ALLOC over the limit");
        }
        finally { p.Close(ga); }

        // Read-only grant: the mapper can map it read-only, never writable.
        using var ro = new PeerGrants(c, 1, writable: false);
        ro.Memory[1] = 0x11;
        using var dev = GrantDevice.Open(c.Process);
        Check.Throws(Errno.EINVAL, () => dev.Map(c.Peer, [new GrantRef(ro.Refs[0])], writable: true).Dispose(), "writable map of a read-only grant");
        using var m = dev.Map(c.Peer, [new GrantRef(ro.Refs[0])], writable: false);
        Check.Equal((byte)0x11, m.ReadOnlyMemory.Span[1], "read-only map data");
    }

    private static void GA02(ConformanceContext c)
    {
        var p = c.PeerProcess;
        int ga = Raw.Open(p, GrantSharer.Path);
        try { Check.Errno(Errno.EINVAL, Raw.Dealloc(p, ga, 0, 1), "DEALLOC of nothing"); }
        finally { p.Close(ga); }
        var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(c.Process);
        var m = dev.Map(c.Peer, [new GrantRef(g.Refs[0])]);
        g.Memory[0] = 0x77;
        g.Deallocate();
        g.Dispose();
        Check.Equal((byte)0x77, m.Memory.Span[0], "deallocated grant still mapped by the peer");
        m.Memory.Span[1] = 1;
        m.Dispose();
    }

    private static void GA03(ConformanceContext c)
    {
        var p = c.PeerProcess;
        int ga = Raw.Open(p, GrantSharer.Path);
        try
        {
            Check.Ok(Raw.Alloc(p, ga, c.Self, 1, true, out ulong idx, out _), "ALLOC");
            int Notify(ulong index, uint action) =>
                p.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, Raw.Bytes(new ioctl_gntalloc_unmap_notify { index = index, action = action }));
            Check.Errno(Errno.ENOENT, Notify(idx + 64 * 4096, 1), "unknown offset");
            Check.Errno(Errno.EINVAL, Notify(idx, 4), "bad action");
            Check.Errno(Errno.EINVAL, p.Mmap(ga, (long)idx, Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE), "mmap without MAP_SHARED");
            Check.Ok(Raw.Dealloc(p, ga, idx, 1), "DEALLOC");
        }
        finally { p.Close(ga); }
    }

    private static void EV01(ConformanceContext c)
    {
        using var a = EventChannels.Open(c.Process);
        using var b = EventChannels.Open(c.PeerProcess);
        var pa = a.BindUnbound(c.Peer);
        var pb = b.BindInterdomain(c.Self, pa);
        b.Notify(pb);
        var got = a.WaitPending(TimeSpan.FromSeconds(30));
        Check.Equal((EventPort?)pa, got, "pending port");
        a.Unmask(pa);
        a.Notify(pa);
        Check.Equal((EventPort?)pb, b.WaitPending(TimeSpan.FromSeconds(30)), "pending port on the other end");
        b.Unmask(pb);
        b.Unbind(pb);
        a.Unbind(pa);
    }

    private static void EV02(ConformanceContext c)
    {
        var p = c.Process;
        using var e = EventChannels.Open(p);
        var port = e.BindUnbound(c.Peer);
        using var other = EventChannels.Open(p);
        Check.Throws(Errno.ENOTCONN, () => other.Unbind(port), "UNBIND of a port bound to another file");
        Check.Throws(Errno.ENOTCONN, () => other.Notify(port), "NOTIFY of a port bound to another file");
        Check.Throws(Errno.EINVAL, () => other.Unbind(new EventPort(0x7FFFFFFF)), "port >= max");
        Check.Errno(Errno.ENOSYS, p.Ioctl(e.Fd, Ioc.Encode(Ioc.None, 'E', 99, 0), []), "unknown evtchn ioctl");
        e.Unbind(port);
    }
}
