using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;
using XenShare.Tests.Emulation;

namespace XenShare.Tests.Reliability;

/// <summary>Campaign 3: a domain reaches only frames it owns or holds a mapping of; read-only grants are
/// not writable through any path; ended grants cannot be mapped again; a destroyed domain's pages live
/// exactly as long as a foreign mapping of them.</summary>
public sealed class IsolationTests : DmaBufTest
{
    private EmulatedGuest? _third;
    private EmulatedGuest Third => _third ??= Host.CreateGuest(new DomainConfig { RamPages = 256, UnpopulatedPages = 256 });

    private int MapAndMmap(EmulatedGuest from, uint gref, bool write, out long va)
    {
        int gd = Open(P0, GntDev);
        ulong off = MapGrantRefs(P0, gd, from.Id, gref);
        va = P0.Mmap(gd, (long)off, 4096, Posix.PROT_READ | (write ? Posix.PROT_WRITE : 0), Posix.MAP_SHARED);
        return gd;
    }

    private short CopyStatus(uint gref, DomainId dom, bool toGrant, ushort len = 16)
    {
        long local = P0.Mmap(-1, 0, 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        int gd = Open(P0, GntDev);
        var seg = new gntdev_grant_copy_segment { len = len, flags = (ushort)(toGrant ? GntCopy.dest_gref : GntCopy.source_gref) };
        var f = new gntdev_grant_copy_foreign { @ref = gref, domid = dom.Value };
        if (toGrant) { seg.dest.foreign = f; seg.source.virt = (ulong)local; }
        else { seg.source.foreign = f; seg.dest.virt = (ulong)local; }
        unsafe { MemoryMarshal.Write(new Span<byte>((void*)(local + 2048), 24), seg); }
        var arg = Bytes(new ioctl_gntdev_grant_copy { count = 1, segments = (ulong)(local + 2048) });
        Assert.Equal(0, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY, arg));
        short st;
        unsafe { st = MemoryMarshal.Read<short>(new ReadOnlySpan<byte>((void*)(local + 2048 + 20), 2)); }
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Munmap(local, 4096));
        return st;
    }

    [Fact]
    public void Isolation_RefsGrantedToAnotherDomain_CannotBeMappedCopiedOrExported()
    {
        var g = Share(1, to: Third.Id);                    // domU grants to dom2, not to dom0
        int gd = MapAndMmap(DomU, g.Refs[0], write: false, out long va);
        Assert.Equal(-Errno.EINVAL, va);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(GntSt.general_error, CopyStatus(g.Refs[0], DomU.Id, toGrant: false));
        Assert.Equal(GntSt.general_error, CopyStatus(g.Refs[0], DomU.Id, toGrant: true));
        int gd2 = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Export(P0, gd2, 0, DomU.Id.Value, g.Refs, out _));
        Assert.Equal(0, P0.Close(gd2));
        AssertNotMapped(g);
        g.Close();
    }

    [Fact]
    public void Isolation_UnusedAndReservedRefs_AndForgedHandles_AreRefused()
    {
        // Refs never granted, reserved refs, refs beyond the table: nothing to map or copy.
        foreach (uint r in new uint[] { 0, 1, 7, 100, 511, 512, 100_000 })
        {
            Assert.NotEqual(GntSt.okay, CopyStatus(r, DomU.Id, toGrant: false));
            var op = new GnttabMapGrantRef { Flags = GntMap.host_map | GntMap.@readonly, Ref = new GrantRef(r), Dom = DomU.Id, HostAddr = (ulong)(Dom0.Domain.RamPages + 5) << 12 };
            Assert.NotEqual(GntSt.okay, Xen.MapOne(Dom0.Domain, ref op));
        }
        // A forged handle unmaps nothing (bad_handle) and leaves another domain's mapping intact.
        var g = Share(1);
        int gd = MapAndMmap(DomU, g.Refs[0], write: false, out long va);
        Assert.True(va > 0);
        foreach (int h in new[] { -1, 1, 255, 256, 100_000, int.MaxValue })
        {
            var u = new GnttabUnmapGrantRef { Handle = h };
            Assert.Equal(GntSt.bad_handle, Xen.UnmapOne(Third.Domain, ref u));   // dom2 has no mappings at all
        }
        unsafe { Assert.Equal(1, *(byte*)va); }
        Assert.Equal(0, P0.Munmap(va, 4096));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void Isolation_ReadOnlyGrant_IsNotWritableThroughAnyPath()
    {
        var g = Share(1, writable: false);
        // mmap: writable refused (GD02), read-only works and is PROT_READ (ReadOnlySpan in the typed API).
        int gd = MapAndMmap(DomU, g.Refs[0], write: true, out long va);
        Assert.Equal(-Errno.EINVAL, va);
        Assert.Equal(0, P0.Close(gd));
        gd = MapAndMmap(DomU, g.Refs[0], write: false, out va);
        Assert.True(va > 0);
        Assert.Equal(Gtf.permit_access | Gtf.@readonly | Gtf.reading, Entry(DomU, g.Refs[0]).Flags);
        // A user pointer into the read-only mapping is not a GRANT_COPY destination (EFAULT).
        Assert.Equal(0, P0.Munmap(va, 4096));
        Assert.Equal(0, P0.Close(gd));
        // GRANT_COPY into the grant: general_error, and the data is unchanged (GT09).
        Assert.Equal(GntSt.general_error, CopyStatus(g.Refs[0], DomU.Id, toGrant: true));
        Assert.Equal(1, g.Data[0]);
        Assert.Equal(GntSt.okay, CopyStatus(g.Refs[0], DomU.Id, toGrant: false));
        // Export (the importer could DMA-write it) fails: EX05.
        int gd2 = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Export(P0, gd2, 0, DomU.Id.Value, g.Refs, out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd2, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT, DomU.Id.Value, g.Refs, out _));
        Assert.Equal(0, P0.Close(gd2));
        AssertNotMapped(g);
        g.Close();
    }

    [Fact]
    public void Isolation_AfterEndAccess_NoNewMappingSucceeds()
    {
        var g = Share(2);
        uint r0 = g.Refs[0];
        g.Close();                                          // munmap + close: access ended, pages freed
        Assert.Equal(0, Entry(DomU, r0).Flags);
        int gd = MapAndMmap(DomU, r0, write: false, out long va);
        Assert.Equal(-Errno.EINVAL, va);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(GntSt.general_error, CopyStatus(r0, DomU.Id, toGrant: false));
        int gd2 = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Export(P0, gd2, 0, DomU.Id.Value, [r0], out _));
        Assert.Equal(0, P0.Close(gd2));
    }

    [Fact]
    public void Isolation_DestroyedDomain_PagesIntactForMappers_FreedAfterLastUnmap()
    {
        var guest = Host.CreateGuest(new DomainConfig { RamPages = 256, UnpopulatedPages = 256 });
        var gp = guest.StartProcess();
        int ga = Open(gp, GntAlloc);
        var (index, refs) = AllocGrefs(gp, ga, Dom0.Id, 2, writable: true);
        long gva = gp.Mmap(ga, (long)index, 2 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        unsafe { *(byte*)gva = 0x5a; *(byte*)(gva + 4096) = 0xa5; }
        // dom0 maps the first page and exports the second, an in-kernel device holds an attachment.
        int gd = Open(P0, GntDev);
        ulong off = MapGrantRefs(P0, gd, guest.Id, refs[0]);
        long va = P0.Mmap(gd, (long)off, 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(va > 0);
        Assert.Equal(0, Export(P0, gd, 0, guest.Id.Value, [refs[1]], out int efd));
        var buf = GetBuf(P0, efd);
        var dev = new DmaDevice(Dom0.Kernel, "isolation");
        var att = buf.Attach(dev, out _)!;
        var table = buf.MapAttachment(att, DmaDirection.ToDevice, out _)!;
        long framesWithGuest = Xen.FramesInUse;
        gp.Dispose();
        Host.DestroyGuest(guest);
        Assert.Equal(1, Xen.ZombieCount);
        Checks.Invariants(Xen, "with a zombie");
        // The pages stay intact and writable for the mappers (GT11).
        unsafe { Assert.Equal(0x5a, *(byte*)va); *(byte*)va = 0x77; Assert.Equal(0x77, *(byte*)va); }
        var one = new byte[1];
        Assert.Equal(0, dev.DmaRead(table.Segments[0].DmaAddress, one));
        Assert.Equal(0xa5, one[0]);
        // A new map of a held page reaches that same page, as on real Xen 4.17 (GT11); it never reaches
        // a page the dead domain gave back.
        var op = new GnttabMapGrantRef { Flags = GntMap.host_map, Ref = new GrantRef(refs[0]), Dom = guest.Id, HostAddr = (ulong)(Dom0.Domain.RamPages + 7) << 12 };
        Assert.Equal(GntSt.okay, Xen.MapOne(Dom0.Domain, ref op));
        Assert.True(Dom0.Domain.P2M.TryGet(new GuestFrame(op.HostAddr >> 12), out var again, out _));
        unsafe { Assert.Equal(0x77, Xen.Memory.FrameSpan(again)[0]); }
        var unmap = new GnttabUnmapGrantRef { Handle = op.Handle, HostAddr = op.HostAddr };
        Assert.Equal(GntSt.okay, Xen.UnmapOne(Dom0.Domain, ref unmap));
        Assert.True(Xen.FramesInUse < framesWithGuest);     // everything else of the guest is freed
        // The last unmap frees them and reaps the zombie.
        Assert.Equal(0, P0.Munmap(va, 4096));
        Assert.Equal(0, UnmapGrantRef(P0, gd, off, 1));     // GD03 (Arm): munmap alone keeps the grant mapped
        Assert.Equal(1, Xen.ZombieCount);
        buf.UnmapAttachment(att, table, DmaDirection.ToDevice);
        buf.Detach(att);
        buf.Put();
        Assert.Equal(0, P0.Close(efd));
        Assert.Equal(0, Xen.ZombieCount);
        Assert.Equal(0, P0.Close(gd));
        Checks.Invariants(Xen, "after the zombie was reaped");
    }
}
