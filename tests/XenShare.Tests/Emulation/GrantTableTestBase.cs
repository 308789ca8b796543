using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Emulation;

/// <summary>
/// Helpers for the hypervisor-level grant-table tests (GT01-GT11): grants made with the kernel's
/// grant-ref allocator over kernel pages, and map/unmap/copy hypercalls issued directly on the host.
/// Mapping GFNs are taken from the mapper's unpopulated range by slot number (no kernel involved).
/// </summary>
public abstract class GrantTableTestBase : EmulatorTest
{
    protected GrantTableTestBase() { }

    protected GrantTableTestBase(DomainConfig? domU, DomainConfig? dom0 = null) : base(domU, null, dom0) { }

    /// <summary>A grant made by a kernel: the ref and the page behind it.</summary>
    protected sealed record Granted(EmulatedGuest Owner, uint Ref, GuestFrame Gfn)
    {
        public GrantRef GrantRef => new(Ref);
    }

    /// <summary>Allocates a zeroed page and a ref in <paramref name="owner"/> and grants it to <paramref name="to"/>.</summary>
    protected static Granted Grant(EmulatedGuest owner, DomainId to, bool readOnly = false, byte fill = 0)
    {
        Span<GuestFrame> page = stackalloc GuestFrame[1];
        Assert.True(owner.Kernel.TryAllocPages(page, zero: true));
        Span<uint> r = stackalloc uint[1];
        Assert.Equal(0, owner.Kernel.Grants.Allocate(r));
        Assert.True(r[0] >= GrantTableConstants.NrReservedEntries);
        if (fill != 0) owner.Kernel.FrameSpan(page[0]).Fill(fill);
        owner.Kernel.Grants.Grant(r[0], to, page[0], readOnly);
        return new Granted(owner, r[0], page[0]);
    }

    /// <summary>Ends access (must succeed: nothing maps it), frees the ref and the page.</summary>
    protected static void Revoke(Granted g)
    {
        Assert.True(g.Owner.Kernel.Grants.TryEndAccess(g.Ref), $"end access of ref {g.Ref}");
        g.Owner.Kernel.Grants.Free(g.Ref);
        g.Owner.Kernel.FreePage(g.Gfn);
    }

    /// <summary>The machine frame behind a granted page.</summary>
    protected static MachineFrame MfnOf(Granted g)
    {
        Assert.True(g.Owner.Domain.P2M.TryGet(g.Gfn, out var mfn, out bool foreign));
        Assert.False(foreign);
        return mfn;
    }

    /// <summary>Guest-physical address of unpopulated slot <paramref name="slot"/> of a domain.</summary>
    protected static ulong Gpa(Domain d, int slot) => (ulong)(d.RamPages + slot) << 12;

    protected static GnttabMapGrantRef MapOp(Domain mapper, DomainId granter, uint gref, int slot, uint flags = GntMap.host_map) =>
        new() { HostAddr = (flags & GntMap.host_map) != 0 ? Gpa(mapper, slot) : 0, Flags = flags, Ref = new GrantRef(gref), Dom = granter };

    /// <summary>Maps and expects success.</summary>
    protected GnttabMapGrantRef MapOk(Domain mapper, Granted g, int slot, uint flags = GntMap.host_map)
    {
        var op = MapOp(mapper, g.Owner.Id, g.Ref, slot, flags);
        short st = Xen.MapOne(mapper, ref op);
        Assert.True(st == GntSt.okay, $"map ref {g.Ref} of {g.Owner} into {mapper}: {GntSt.Name(st)}");
        Assert.Equal(st, op.Status);
        return op;
    }

    /// <summary>Maps and expects <paramref name="expected"/>; checks the failure left no trace: no handle,
    /// no maptrack entry, no pin, no P2M slot, the entry unchanged.</summary>
    protected short MapFails(Domain mapper, ref GnttabMapGrantRef op, short expected, Granted? g = null)
    {
        int maptrack = mapper.MapTrackInUse;
        int foreign = mapper.P2M.CountForeign();
        int pins = g?.Owner.Domain.GrantTable.ActivePins ?? 0;
        var entry = g is null ? default : g.Owner.Domain.GrantTable.ReadEntry(g.GrantRef);
        short st = Xen.MapOne(mapper, ref op);
        Assert.True(st == expected, $"expected {GntSt.Name(expected)}, got {GntSt.Name(st)}");
        Assert.Equal(st, op.Status);
        Assert.Equal(-1, op.Handle);
        Assert.Equal(0UL, op.DevBusAddr);
        Assert.Equal(maptrack, mapper.MapTrackInUse);
        Assert.Equal(foreign, mapper.P2M.CountForeign());
        if (g is not null)
        {
            Assert.Equal(pins, g.Owner.Domain.GrantTable.ActivePins);
            Assert.Equal(entry, g.Owner.Domain.GrantTable.ReadEntry(g.GrantRef));
        }
        return st;
    }

    protected short Unmap(Domain mapper, int handle, ulong hostAddr = 0, ulong devBusAddr = 0)
    {
        var op = new GnttabUnmapGrantRef { Handle = handle, HostAddr = hostAddr, DevBusAddr = devBusAddr };
        short st = Xen.UnmapOne(mapper, ref op);
        Assert.Equal(st, op.Status);
        return st;
    }

    protected void UnmapOk(Domain mapper, in GnttabMapGrantRef mapped)
    {
        short st = Unmap(mapper, mapped.Handle, mapped.HostAddr, mapped.DevBusAddr);
        Assert.True(st == GntSt.okay, $"unmap handle {mapped.Handle}: {GntSt.Name(st)}");
    }

    protected static GnttabCopyPtr GrefPtr(Granted g, ushort offset = 0) => new() { RefOrGfn = g.Ref, Domain = g.Owner.Id, Offset = offset };

    protected static GnttabCopyPtr LocalPtr(GuestFrame gfn, ushort offset = 0) => new() { RefOrGfn = gfn.Value, Domain = new DomainId(GrantTableConstants.DOMID_SELF), Offset = offset };

    protected short CopyOne(Domain caller, GnttabCopyPtr src, GnttabCopyPtr dst, ushort len, ushort flags)
    {
        Span<GnttabCopy> ops = stackalloc GnttabCopy[1];
        ops[0] = new GnttabCopy { Source = src, Dest = dst, Len = len, Flags = flags, Status = 99 };
        Xen.Copy(caller, ops);
        return ops[0].Status;
    }

    /// <summary>Allocates a zeroed local RAM page of a kernel.</summary>
    protected static GuestFrame LocalPage(EmulatedGuest g)
    {
        Span<GuestFrame> page = stackalloc GuestFrame[1];
        Assert.True(g.Kernel.TryAllocPages(page, zero: true));
        return page[0];
    }
}
