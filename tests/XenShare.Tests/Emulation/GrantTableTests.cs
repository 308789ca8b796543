using System.Buffers.Binary;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Emulation;

/// <summary>The hypervisor's grant table, hypercall by hypercall (spec section 1, GT01-GT11).</summary>
public sealed class GrantTableTests : GrantTableTestBase
{
    private static readonly DomainId Nobody = new(77);

    private Domain D0 => Dom0.Domain;
    private Domain DU => DomU.Domain;

    /// <summary>A domain without a kernel, mapping only through hypercalls.</summary>
    private Domain RawDomain(DomainType type = DomainType.Arm64, int unpopulated = 1024, int maptrackFrames = 1024) =>
        Xen.CreateDomain(new DomainConfig { Type = type, RamPages = 16, UnpopulatedPages = unpopulated, MaptrackFrames = maptrackFrames });

    /// <summary>A ref of <paramref name="owner"/> granting an arbitrary GFN (not a kernel page).</summary>
    private static uint GrantRaw(EmulatedGuest owner, DomainId to, GuestFrame gfn, bool readOnly = false)
    {
        Span<uint> r = stackalloc uint[1];
        Assert.Equal(0, owner.Kernel.Grants.Allocate(r));
        owner.Kernel.Grants.Grant(r[0], to, gfn, readOnly);
        return r[0];
    }

    private static void RevokeRaw(EmulatedGuest owner, uint gref)
    {
        Assert.True(owner.Kernel.Grants.TryEndAccess(gref));
        owner.Kernel.Grants.Free(gref);
    }

    private MachineFrame FindEntryFrame(DomainId owner, uint gref, byte[] pattern)
    {
        int offset = (int)(gref % GrantTableConstants.EntriesPerFrame) * GrantTableConstants.GrantEntryV1Size;
        var found = new List<MachineFrame>();
        var mem = Xen.Memory;
        for (ulong f = 1; f < (ulong)mem.FrameCount; f++)
        {
            var m = new MachineFrame(f);
            if (mem.RefCountOf(m) == 0 || mem.OwnerOf(m) != owner) continue;
            if (mem.FrameSpan(m).Slice(offset, 8).SequenceEqual(pattern)) found.Add(m);
        }
        return Assert.Single(found);
    }

    // ================================================================== GT01

    [Fact]
    public void GT01_FlagBitValues_AndEntryGeometry()
    {
        Assert.Equal(8, GrantTableConstants.GrantEntryV1Size);
        Assert.Equal(512, GrantTableConstants.EntriesPerFrame);
        Assert.Equal(0, Gtf.invalid);
        Assert.Equal(1, Gtf.permit_access);
        Assert.Equal(2, Gtf.accept_transfer);
        Assert.Equal(3, Gtf.transitive);
        Assert.Equal(3, Gtf.type_mask);
        Assert.Equal(1 << 2, Gtf.@readonly);
        Assert.Equal(1 << 3, Gtf.reading);
        Assert.Equal(1 << 4, Gtf.writing);
        Assert.Equal(1 << 5, Gtf.PWT);
        Assert.Equal(1 << 6, Gtf.PCD);
        Assert.Equal(1 << 7, Gtf.PAT);
        Assert.Equal(1 << 8, Gtf.sub_page);
    }

    [Fact]
    public void GT01_EntryIsFlagsDomidFrame_8BytesAtOffset8TimesRef_InItsGrantFrame()
    {
        var table = DU.GrantTable;
        var refs = new uint[600];
        Assert.Equal(0, DomU.Kernel.Grants.Allocate(refs));
        Assert.Equal(2, table.NrFrames);
        Assert.Equal(1024u, table.EntryCount);
        uint a = 100, b = 512 + 37;
        Assert.Contains(a, refs);
        Assert.Contains(b, refs);

        ushort fa = Gtf.permit_access | Gtf.@readonly | Gtf.PWT;   // 0x25
        table.WriteEntry(new GrantRef(a), fa, new DomainId(0x0abc), 0xdeadbeef);
        table.WriteEntry(new GrantRef(b), Gtf.permit_access | Gtf.sub_page, new DomainId(0x0123), 0x01020304);
        Assert.Equal((fa, (ushort)0x0abc, 0xdeadbeefu), table.ReadEntry(new GrantRef(a)));
        Assert.Equal(((ushort)0x101, (ushort)0x0123, 0x01020304u), table.ReadEntry(new GrantRef(b)));

        // Little-endian u16 flags, u16 domid, u32 frame, at byte 8*(ref mod 512) of the ref's grant frame.
        var frameA = FindEntryFrame(DomU.Id, a, [0x25, 0x00, 0xbc, 0x0a, 0xef, 0xbe, 0xad, 0xde]);
        var frameB = FindEntryFrame(DomU.Id, b, [0x01, 0x01, 0x23, 0x01, 0x04, 0x03, 0x02, 0x01]);
        Assert.NotEqual(frameA, frameB);   // ref 549 lives in the second grant frame
        // Grant frames are Xen's, not guest RAM.
        for (ulong g = 0; g < (ulong)DU.RamPages; g++)
        {
            Assert.True(DU.P2M.TryGet(new GuestFrame(g), out var m, out _));
            Assert.NotEqual(frameA, m);
            Assert.NotEqual(frameB, m);
        }
        // Exactly 8 bytes: the neighbours are untouched.
        var span = Xen.Memory.FrameSpan(frameA);
        int off = 8 * (int)a;
        Assert.True(span.Slice(off - 8, 8).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(span.Slice(off + 8, 8).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(default, table.ReadEntry(new GrantRef(a - 1)));
        Assert.Equal(default, table.ReadEntry(new GrantRef(a + 1)));

        // The entry is shared memory: a store into the frame is what ReadEntry (and Xen) sees.
        BinaryPrimitives.WriteUInt32LittleEndian(span.Slice(off + 4), 0x00c0ffee);
        BinaryPrimitives.WriteUInt16LittleEndian(span.Slice(off + 2), 0x0007);
        Assert.Equal((fa, (ushort)7, 0x00c0ffeeu), table.ReadEntry(new GrantRef(a)));

        Assert.Throws<ArgumentOutOfRangeException>(() => table.ReadEntry(new GrantRef(1024)));
        Assert.Throws<ArgumentOutOfRangeException>(() => table.WriteEntry(new GrantRef(1024), Gtf.permit_access, Dom0.Id, 1));

        table.WriteEntry(new GrantRef(a), 0, default, 0);
        table.WriteEntry(new GrantRef(b), 0, default, 0);
        Assert.True(span.Slice(off, 8).IndexOfAnyExcept((byte)0) < 0);
        foreach (uint r in refs) DomU.Kernel.Grants.Free(r);
    }

    [Theory]
    [InlineData(Gtf.invalid)]
    [InlineData(Gtf.permit_access)]
    [InlineData(Gtf.accept_transfer)]
    [InlineData(Gtf.transitive)]
    public void GT01_TypeIsFlagBits0And1_OnlyPermitAccessIsMappable(ushort type)
    {
        var g = Grant(DomU, Dom0.Id);
        // Other flag bits around the type do not change it.
        ushort flags = (ushort)(type | Gtf.PCD | Gtf.PAT);
        DU.GrantTable.WriteEntry(g.GrantRef, flags, Dom0.Id, (uint)g.Gfn.Value);
        Assert.Equal(type, DU.GrantTable.ReadEntry(g.GrantRef).Flags & Gtf.type_mask);
        var op = MapOp(D0, DomU.Id, g.Ref, 0);
        if (type == Gtf.permit_access)
        {
            op = MapOk(D0, g, 0);
            Assert.Equal(flags | Gtf.reading | Gtf.writing, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
            UnmapOk(D0, op);
            Assert.Equal(flags, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        }
        else
        {
            MapFails(D0, ref op, GntSt.general_error, g);
        }
        DU.GrantTable.WriteEntry(g.GrantRef, Gtf.permit_access, Dom0.Id, (uint)g.Gfn.Value);
        Revoke(g);
    }

    // ================================================================== GT02

    [Fact]
    public void GT02_KernelAllocator_NeverHandsOutRefs0To7()
    {
        var grants = DomU.Kernel.Grants;
        var first = new uint[1];
        Assert.Equal(0, grants.Allocate(first));
        Assert.Equal(GrantTableConstants.NrReservedEntries, first[0]);
        var all = new List<uint>(first);
        for (int n = 1; n <= 60; n++)
        {
            var batch = new uint[n];
            Assert.Equal(0, grants.Allocate(batch));
            all.AddRange(batch);
            // Give some back so the free list is exercised too.
            if (n % 3 == 0) { grants.Free(batch[0]); all.Remove(batch[0]); }
        }
        Assert.All(all, r => Assert.True(r >= 8, $"reserved ref {r} handed out"));
        Assert.Equal(all.Count, all.Distinct().Count());
        foreach (uint r in all) grants.Free(r);
        for (uint r = 0; r < 8; r++) Assert.Equal(default, DU.GrantTable.ReadEntry(new GrantRef(r)));
    }

    [Fact]
    public void GT02_GntAllocIoctl_RefsAreNeverReserved()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (_, refs) = AllocGrefs(PU, ga, Dom0.Id, 1000);
        var (_, more) = AllocGrefs(PU, ga, Dom0.Id, 3, writable: false);
        var all = refs.Concat(more).ToArray();
        Assert.All(all, r => Assert.True(r >= GrantTableConstants.NrReservedEntries, $"reserved ref {r}"));
        Assert.Equal(all.Length, all.Distinct().Count());
        for (uint r = 0; r < 8; r++) Assert.Equal(default, DU.GrantTable.ReadEntry(new GrantRef(r)));
        Assert.Equal(Gtf.permit_access | Gtf.@readonly, Entry(DomU, more[0]).Flags);
        Assert.Equal(0, PU.Close(ga));
    }

    // ================================================================== GT03

    [Fact]
    public void GT03_StartsWithOneFrame_QuerySizeReportsNrAndMax()
    {
        Assert.Equal((1, 64), XenHost.QuerySize(DU));
        Assert.Equal((1, 64), XenHost.QuerySize(D0));
        var small = RawDomain();
        Assert.Equal(1, small.GrantTable.NrFrames);
        var custom = Xen.CreateDomain(new DomainConfig { RamPages = 16, UnpopulatedPages = 16, MaxGrantFrames = 5 });
        Assert.Equal((1, 5), XenHost.QuerySize(custom));
        Assert.Equal(512u, custom.GrantTable.EntryCount);
    }

    [Fact]
    public void GT03_GrowsOnDemand_UpToMaxGrantFrames()
    {
        var g = Host.CreateGuest(new DomainConfig { RamPages = 64, MaxGrantFrames = 3 });
        var grants = g.Kernel.Grants;
        var held = new List<uint>();
        uint[] Alloc(int n)
        {
            var r = new uint[n];
            Assert.Equal(0, grants.Allocate(r));
            held.AddRange(r);
            return r;
        }

        Alloc(504);                                   // refs 8..511: the first frame is full
        Assert.Equal((1, 3), XenHost.QuerySize(g.Domain));
        Assert.Equal(512u, Assert.Single(Alloc(1)));  // grows by one frame on demand
        Assert.Equal((2, 3), XenHost.QuerySize(g.Domain));
        Alloc(3 * 512 - 8 - 505);                     // everything up to max_grant_frames
        Assert.Equal((3, 3), XenHost.QuerySize(g.Domain));
        Assert.Equal(1536u, g.Domain.GrantTable.EntryCount);
        Assert.Equal(held.Count, held.Distinct().Count());
        Assert.Equal(1535u, held.Max());

        Assert.Equal(-Errno.ENOSPC, grants.Allocate(new uint[1]));
        Assert.Equal(held.Count, grants.InUse);       // all or nothing: nothing taken
        Assert.False(g.Domain.GrantTable.TryGrow(4));
        Assert.True(g.Domain.GrantTable.TryGrow(3));
        Assert.Equal((3, 3), XenHost.QuerySize(g.Domain));

        // Ten back: eleven still do not fit, ten do.
        for (int i = 0; i < 10; i++) { grants.Free(held[^1]); held.RemoveAt(held.Count - 1); }
        Assert.Equal(-Errno.ENOSPC, grants.Allocate(new uint[11]));
        Alloc(10);
        foreach (uint r in held) grants.Free(r);
        Assert.Equal(0, grants.InUse);
    }

    [Fact]
    public void GT03_FullDefaultTable_32760RefsAllocatable_OneMoreIsEnospc()
    {
        var grants = DomU.Kernel.Grants;
        var refs = new uint[32768 - 8];
        Assert.Equal(0, grants.Allocate(refs));
        Assert.Equal((64, 64), XenHost.QuerySize(DU));
        Assert.Equal(32768u, DU.GrantTable.EntryCount);
        Array.Sort(refs);
        for (int i = 0; i < refs.Length; i++) Assert.Equal((uint)(i + 8), refs[i]);
        Assert.Equal(-Errno.ENOSPC, grants.Allocate(new uint[1]));
        Assert.Equal(refs.Length, grants.InUse);

        // The last entry of the last frame works like any other.
        var page = LocalPage(DomU);
        grants.Grant(32767, Dom0.Id, page, readOnly: false);
        var g = new Granted(DomU, 32767, page);
        var op = MapOk(D0, g, 0);
        Assert.Equal(MfnOf(g).Value << 12, op.DevBusAddr);
        UnmapOk(D0, op);
        Assert.True(grants.TryEndAccess(32767));
        DomU.Kernel.FreePage(page);
        foreach (uint r in refs) grants.Free(r);
    }

    // ================================================================== GT04

    [Fact]
    public void GT04_MaptrackExhaustion_IsNoSpace()
    {
        var mapper = RawDomain(maptrackFrames: 1);
        Assert.Equal(256, mapper.MapTrackMax);
        var g = Grant(DomU, mapper.Id);
        var ops = new GnttabMapGrantRef[256];
        for (int i = 0; i < ops.Length; i++) ops[i] = MapOp(mapper, DomU.Id, g.Ref, i);
        Xen.MapGrantRefs(mapper, ops);
        Assert.All(ops, o => Assert.Equal(GntSt.okay, o.Status));
        Assert.Equal(256, mapper.MapTrackInUse);

        var extra = MapOp(mapper, DomU.Id, g.Ref, 300);
        MapFails(mapper, ref extra, GntSt.no_space, g);
        Assert.Equal(256, DU.GrantTable.ActivePins);
        // The table is per mapping domain: dom0 still maps the same granter's pages.
        var g0 = Grant(DomU, Dom0.Id);
        UnmapOk(D0, MapOk(D0, g0, 0));
        Revoke(g0);

        // One handle back: the next map fits again.
        UnmapOk(mapper, ops[17]);
        ops[17] = MapOk(mapper, g, 300);
        foreach (var o in ops) UnmapOk(mapper, o);
        Assert.Equal(0, mapper.MapTrackInUse);
        Revoke(g);
    }

    [Fact]
    public void GT04_DefaultMaptrack_262144ConcurrentMappingsInOneDomain_ThenNoSpace()
    {
        const int Total = 1024 * 256, Batch = 4096, Pages = 4;
        var mapper = RawDomain(unpopulated: Total + 16);
        Assert.Equal(Total, mapper.MapTrackMax);
        var gs = Enumerable.Range(0, Pages).Select(i => Grant(DomU, mapper.Id, fill: (byte)(0x10 + i))).ToArray();

        var handles = new int[Total];
        var ops = new GnttabMapGrantRef[Batch];
        int bad = 0;
        for (int b = 0; b < Total; b += Batch)
        {
            for (int i = 0; i < Batch; i++) ops[i] = MapOp(mapper, DomU.Id, gs[(b + i) % Pages].Ref, b + i);
            Xen.MapGrantRefs(mapper, ops);
            for (int i = 0; i < Batch; i++)
            {
                if (ops[i].Status != GntSt.okay) bad++;
                handles[b + i] = ops[i].Handle;
            }
        }
        Assert.Equal(0, bad);
        Assert.Equal(Total, mapper.MapTrackInUse);
        Assert.Equal(Total, DU.GrantTable.ActivePins);
        Assert.Equal(Total, handles.Distinct().Count());
        Assert.Equal(Total, mapper.P2M.CountForeign());
        foreach (var g in gs) Assert.Equal(1 + Total / Pages, Xen.Memory.RefCountOf(MfnOf(g)));
        // Spot-check: the last mapping shows page 3.
        Assert.True(mapper.P2M.TryGet(new GuestFrame((ulong)(mapper.RamPages + Total - 1)), out var last, out bool foreign));
        Assert.True(foreign);
        Assert.Equal(0x13, Xen.Memory.FrameSpan(last)[123]);

        var extra = MapOp(mapper, DomU.Id, gs[0].Ref, Total);
        MapFails(mapper, ref extra, GntSt.no_space, gs[0]);

        var uops = new GnttabUnmapGrantRef[Batch];
        for (int b = 0; b < Total; b += Batch)
        {
            for (int i = 0; i < Batch; i++) uops[i] = new GnttabUnmapGrantRef { Handle = handles[b + i], HostAddr = Gpa(mapper, b + i) };
            Xen.UnmapGrantRefs(mapper, uops);
            foreach (var u in uops) if (u.Status != GntSt.okay) bad++;
        }
        Assert.Equal(0, bad);
        Assert.Equal(0, mapper.MapTrackInUse);
        Assert.Equal(0, DU.GrantTable.ActivePins);
        foreach (var g in gs)
        {
            Assert.Equal(1, Xen.Memory.RefCountOf(MfnOf(g)));
            Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
            Revoke(g);
        }
    }

    // ================================================================== GT05

    [Fact]
    public void GT05_StatusCodeValues()
    {
        Assert.Equal(0, GntSt.okay);
        Assert.Equal(-1, GntSt.general_error);
        Assert.Equal(-2, GntSt.bad_domain);
        Assert.Equal(-3, GntSt.bad_gntref);
        Assert.Equal(-4, GntSt.bad_handle);
        Assert.Equal(-5, GntSt.bad_virt_addr);
        Assert.Equal(-6, GntSt.bad_dev_addr);
        Assert.Equal(-7, GntSt.no_device_space);
        Assert.Equal(-8, GntSt.permission_denied);
        Assert.Equal(-9, GntSt.bad_page);
        Assert.Equal(-10, GntSt.bad_copy_arg);
        Assert.Equal(-11, GntSt.address_too_big);
        Assert.Equal(-12, GntSt.eagain);
        Assert.Equal(-13, GntSt.no_space);
        Assert.Equal("GNTST_no_space", GntSt.Name(-13));
        Assert.Equal("GNTST_bad_copy_arg", GntSt.Name(-10));
        Assert.Equal("GNTST_-14", GntSt.Name(-14));
    }

    // ================================================================== GT06

    [Fact]
    public void GT06_MapFlagValues()
    {
        Assert.Equal(1u << 0, GntMap.device_map);
        Assert.Equal(1u << 1, GntMap.host_map);
        Assert.Equal(1u << 2, GntMap.@readonly);
        Assert.Equal(1u << 3, GntMap.application_map);
        Assert.Equal(1u << 4, GntMap.contains_pte);
    }

    [Theory]
    [InlineData(DomainType.Arm64)]
    [InlineData(DomainType.X86Hvm)]
    [InlineData(DomainType.X86Pv)]
    public void GT06_NeitherHostNorDeviceMap_IsBadGntref_CheckedFirst(DomainType type)
    {
        var mapper = RawDomain(type, maptrackFrames: 1);
        var g = Grant(DomU, mapper.Id);
        // A valid grant: still bad_gntref.
        var op = MapOp(mapper, DomU.Id, g.Ref, 0, flags: 0);
        MapFails(mapper, ref op, GntSt.bad_gntref, g);
        op = MapOp(mapper, DomU.Id, g.Ref, 0, flags: GntMap.@readonly);
        MapFails(mapper, ref op, GntSt.bad_gntref, g);
        // Also failing the auto-translated check, the domain check and the ref check: bad_gntref wins.
        op = new GnttabMapGrantRef { Flags = GntMap.application_map | GntMap.contains_pte, Dom = Nobody, Ref = new GrantRef(uint.MaxValue) };
        MapFails(mapper, ref op, GntSt.bad_gntref);
        Revoke(g);
    }

    [Fact]
    public void GT06_X86HvmDeviceMap_IsGeneralError_BeforeUnknownDomain()
    {
        var hvm = RawDomain(DomainType.X86Hvm);
        var g = Grant(DomU, hvm.Id);
        foreach (uint f in new[] { GntMap.device_map, GntMap.device_map | GntMap.host_map, GntMap.host_map | GntMap.application_map,
                                   GntMap.host_map | GntMap.contains_pte, GntMap.device_map | GntMap.@readonly })
        {
            var op = MapOp(hvm, DomU.Id, g.Ref, 0, f);
            MapFails(hvm, ref op, GntSt.general_error, g);
            // Unknown domain too: the auto-translated check comes first.
            op = MapOp(hvm, Nobody, g.Ref, 0, f);
            MapFails(hvm, ref op, GntSt.general_error);
        }
        // A plain host map is fine.
        var ok = MapOk(hvm, g, 0);
        UnmapOk(hvm, ok);
        Revoke(g);
    }

    [Fact]
    public void GT06_ArmDeviceMap_IsAllowed_ApplicationMapAndContainsPte_AreGeneralError()
    {
        var g = Grant(DomU, Dom0.Id);
        var both = MapOk(D0, g, 0, GntMap.host_map | GntMap.device_map);
        var devOnly = MapOk(D0, g, 1, GntMap.device_map);
        Assert.Equal(MfnOf(g).Value << 12, devOnly.DevBusAddr);
        Assert.Equal(1, D0.P2M.CountForeign());   // device-only maps install nothing in the P2M
        // device_map passes the auto-translated check on Arm: the next check decides.
        var op = MapOp(D0, Nobody, g.Ref, 2, GntMap.device_map);
        MapFails(D0, ref op, GntSt.bad_domain);
        foreach (uint f in new[] { GntMap.host_map | GntMap.application_map, GntMap.host_map | GntMap.contains_pte, GntMap.device_map | GntMap.application_map })
        {
            op = MapOp(D0, DomU.Id, g.Ref, 2, f);
            MapFails(D0, ref op, GntSt.general_error, g);
            op = MapOp(D0, Nobody, g.Ref, 2, f);
            MapFails(D0, ref op, GntSt.general_error);
        }
        UnmapOk(D0, devOnly);
        UnmapOk(D0, both);
        Revoke(g);
    }

    [Fact]
    public void GT06_PvDeviceMapApplicationMapContainsPte_AreAllowed()
    {
        var pv = RawDomain(DomainType.X86Pv);
        Assert.False(pv.IsAutoTranslated);
        var g = Grant(DomU, pv.Id);
        var a = MapOk(pv, g, 0, GntMap.host_map | GntMap.device_map | GntMap.application_map | GntMap.contains_pte);
        var b = MapOk(pv, g, 1, GntMap.device_map);
        var c = MapOk(pv, g, 2, GntMap.host_map | GntMap.application_map | GntMap.@readonly);
        Assert.Equal(3, DU.GrantTable.ActivePins);
        UnmapOk(pv, a);
        UnmapOk(pv, b);
        UnmapOk(pv, c);
        Revoke(g);
    }

    [Fact]
    public void GT06_UnknownGrantingDomain_IsBadDomain_BeforeMaptrackCheck()
    {
        var mapper = RawDomain(maptrackFrames: 1);
        var op = MapOp(mapper, Nobody, 8, 0);
        MapFails(mapper, ref op, GntSt.bad_domain);
        op = MapOp(mapper, new DomainId(GrantTableConstants.DOMID_SELF - 1), 8, 0);
        MapFails(mapper, ref op, GntSt.bad_domain);
        op = MapOp(mapper, new DomainId(GrantTableConstants.DOMID_SELF), 8, 0);
        MapFails(mapper, ref op, GntSt.bad_domain);

        // Exhaust the maptrack: an unknown domain is still bad_domain, not no_space.
        var g = Grant(DomU, mapper.Id);
        var ops = new GnttabMapGrantRef[mapper.MapTrackMax];
        for (int i = 0; i < ops.Length; i++) ops[i] = MapOp(mapper, DomU.Id, g.Ref, i);
        Xen.MapGrantRefs(mapper, ops);
        Assert.All(ops, o => Assert.Equal(GntSt.okay, o.Status));
        op = MapOp(mapper, Nobody, g.Ref, 500);
        MapFails(mapper, ref op, GntSt.bad_domain);

        // No maptrack handle beats every entry check: ref out of range, invalid entry, wrong domid,
        // write map of a read-only grant, empty frame.
        var ro = Grant(DomU, mapper.Id, readOnly: true);
        var other = Grant(DomU, Dom0.Id);
        uint empty = GrantRaw(DomU, mapper.Id, new GuestFrame((ulong)DU.RamPages + 3));
        foreach (uint r in new[] { DU.GrantTable.EntryCount, uint.MaxValue, 300u, other.Ref, ro.Ref, empty })
        {
            op = MapOp(mapper, DomU.Id, r, 500);
            MapFails(mapper, ref op, GntSt.no_space);
        }
        foreach (var o in ops) UnmapOk(mapper, o);
        RevokeRaw(DomU, empty);
        Revoke(other);
        Revoke(ro);
        Revoke(g);
    }

    [Fact]
    public void GT06_RefNotBelowEntryCount_IsBadGntref()
    {
        Assert.Equal(512u, DU.GrantTable.EntryCount);
        foreach (uint r in new[] { 512u, 513u, 32767u, 32768u, uint.MaxValue })
        {
            var op = MapOp(D0, DomU.Id, r, 0);
            MapFails(D0, ref op, GntSt.bad_gntref);
            op = MapOp(D0, DomU.Id, r, 0, GntMap.host_map | GntMap.@readonly);
            MapFails(D0, ref op, GntSt.bad_gntref);
        }
        // Below the count but never granted (invalid entry): past the ref check, fails the type check.
        var inRange = MapOp(D0, DomU.Id, 511, 0);
        MapFails(D0, ref inRange, GntSt.general_error);
        // Reserved refs are in range too; their entries are invalid.
        var reserved = MapOp(D0, DomU.Id, 0, 0);
        MapFails(D0, ref reserved, GntSt.general_error);
    }

    [Fact]
    public void GT06_EntryGrantedToAnotherDomain_IsGeneralError()
    {
        var third = RawDomain();
        var g = Grant(DomU, third.Id);
        var op = MapOp(D0, DomU.Id, g.Ref, 0);
        MapFails(D0, ref op, GntSt.general_error, g);
        op = MapOp(D0, DomU.Id, g.Ref, 0, GntMap.host_map | GntMap.@readonly);
        MapFails(D0, ref op, GntSt.general_error, g);
        // The right domain maps it; a foreign mapper is still refused while it is pinned.
        var ok = MapOk(third, g, 0);
        op = MapOp(D0, DomU.Id, g.Ref, 0);
        MapFails(D0, ref op, GntSt.general_error, g);
        // The granter itself is not the grantee either.
        op = MapOp(DU, DomU.Id, g.Ref, 0);
        MapFails(DU, ref op, GntSt.general_error, g);
        UnmapOk(third, ok);
        Revoke(g);
    }

    [Theory]
    [InlineData(Gtf.invalid)]
    [InlineData(Gtf.accept_transfer)]
    [InlineData(Gtf.transitive)]
    public void GT06_EntryTypeNotPermitAccess_IsGeneralError(ushort type)
    {
        var g = Grant(DomU, Dom0.Id);
        DU.GrantTable.WriteEntry(g.GrantRef, type, Dom0.Id, (uint)g.Gfn.Value);
        foreach (uint f in new[] { GntMap.host_map, GntMap.host_map | GntMap.@readonly, GntMap.device_map })
        {
            var op = MapOp(D0, DomU.Id, g.Ref, 0, f);
            MapFails(D0, ref op, GntSt.general_error, g);
        }
        DU.GrantTable.WriteEntry(g.GrantRef, Gtf.permit_access, Dom0.Id, (uint)g.Gfn.Value);
        Revoke(g);
    }

    [Fact]
    public void GT06_WriteMapOfReadonlyGrant_IsGeneralError_ReadonlyMapIsFine()
    {
        var g = Grant(DomU, Dom0.Id, readOnly: true, fill: 0x42);
        var op = MapOp(D0, DomU.Id, g.Ref, 0);
        MapFails(D0, ref op, GntSt.general_error, g);
        op = MapOp(D0, DomU.Id, g.Ref, 0, GntMap.device_map | GntMap.host_map);
        MapFails(D0, ref op, GntSt.general_error, g);
        var ro = MapOk(D0, g, 0, GntMap.host_map | GntMap.@readonly);
        Assert.Equal(Gtf.permit_access | Gtf.@readonly | Gtf.reading, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Assert.Equal(0x42, Xen.Memory.FrameSpan(new MachineFrame(ro.DevBusAddr >> 12))[7]);
        // Still refused while a read-only pin exists.
        op = MapOp(D0, DomU.Id, g.Ref, 1);
        MapFails(D0, ref op, GntSt.general_error, g);
        UnmapOk(D0, ro);
        Revoke(g);
    }

    [Fact]
    public void GT06_GrantedGfnEmpty_IsBadPage_AfterTheEntryChecks()
    {
        var gfn = new GuestFrame((ulong)DU.RamPages + 5);   // unpopulated: nothing there
        uint r = GrantRaw(DomU, Dom0.Id, gfn);
        var op = MapOp(D0, DomU.Id, r, 0);
        MapFails(D0, ref op, GntSt.bad_page);
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(new GrantRef(r)).Flags);
        op = MapOp(D0, DomU.Id, r, 0, GntMap.host_map | GntMap.@readonly);
        MapFails(D0, ref op, GntSt.bad_page);
        // A GFN beyond the whole physmap is no page either.
        uint far = GrantRaw(DomU, Dom0.Id, new GuestFrame(0xfffffff0));
        op = MapOp(D0, DomU.Id, far, 0);
        MapFails(D0, ref op, GntSt.bad_page);

        // Order: a write map of a read-only grant of an empty GFN is general_error (the read-only check
        // comes first), as is a grant of an empty GFN to somebody else.
        uint ro = GrantRaw(DomU, Dom0.Id, gfn, readOnly: true);
        op = MapOp(D0, DomU.Id, ro, 0);
        MapFails(D0, ref op, GntSt.general_error);
        op = MapOp(D0, DomU.Id, ro, 0, GntMap.host_map | GntMap.@readonly);
        MapFails(D0, ref op, GntSt.bad_page);
        uint elsewhere = GrantRaw(DomU, new DomainId(9), gfn);
        op = MapOp(D0, DomU.Id, elsewhere, 0);
        MapFails(D0, ref op, GntSt.general_error);

        // Decrease reservation under a granted page: the grant now names an empty GFN.
        var g = Grant(DomU, Dom0.Id);
        Assert.True(Xen.DecreaseReservation(DU, g.Gfn));
        op = MapOp(D0, DomU.Id, g.Ref, 0);
        MapFails(D0, ref op, GntSt.bad_page, g);
        Assert.True(Xen.PopulatePhysmap(DU, g.Gfn));
        var ok = MapOk(D0, g, 0);
        UnmapOk(D0, ok);

        Revoke(g);
        RevokeRaw(DomU, elsewhere);
        RevokeRaw(DomU, ro);
        RevokeRaw(DomU, far);
        RevokeRaw(DomU, r);
    }

    [Fact]
    public void GT06_GrantedGfnIsAForeignMapping_IsBadPage()
    {
        // domU maps a page dom0 granted it, then grants that GFN onwards to dom0.
        var g0 = Grant(Dom0, DomU.Id, fill: 0x66);
        var inDomU = MapOk(DU, g0, 3);
        var gfn = new GuestFrame(inDomU.HostAddr >> 12);
        Assert.True(DU.P2M.TryGet(gfn, out _, out bool foreign) && foreign);
        uint r = GrantRaw(DomU, Dom0.Id, gfn);
        var op = MapOp(D0, DomU.Id, r, 0);
        MapFails(D0, ref op, GntSt.bad_page);
        op = MapOp(D0, DomU.Id, r, 0, GntMap.host_map | GntMap.@readonly);
        MapFails(D0, ref op, GntSt.bad_page);
        Assert.Equal(1, Dom0.Domain.GrantTable.ActivePins);
        RevokeRaw(DomU, r);
        UnmapOk(DU, inDomU);
        Revoke(g0);
    }

    [Fact]
    public void GT06_GrantedFrameNotOwnedByGranter_IsGeneralError()
    {
        // A frame of dom0 placed in domU's physmap: domU may not grant it.
        Assert.True(Xen.Memory.TryAllocate(Dom0.Id, out var m));
        var gfn = new GuestFrame((ulong)DU.RamPages + 9);
        DU.P2M.SetRam(gfn, m);
        uint r = GrantRaw(DomU, Dom0.Id, gfn);
        var op = MapOp(D0, DomU.Id, r, 0);
        MapFails(D0, ref op, GntSt.general_error);
        op = MapOp(D0, DomU.Id, r, 0, GntMap.device_map);
        MapFails(D0, ref op, GntSt.general_error);
        Assert.Equal(1, Xen.Memory.RefCountOf(m));
        RevokeRaw(DomU, r);
        Assert.True(DU.P2M.TryRemoveRam(gfn, out var back));
        Assert.Equal(m, back);
        Assert.True(Xen.Memory.Put(m));
    }

    [Fact]
    public void GT06_FailedOpsInABatch_DoNotDisturbTheOthers()
    {
        var g = Grant(DomU, Dom0.Id);
        var ops = new[]
        {
            MapOp(D0, DomU.Id, g.Ref, 0),
            MapOp(D0, DomU.Id, g.Ref, 1, 0),
            MapOp(D0, Nobody, g.Ref, 2),
            MapOp(D0, DomU.Id, 4000, 3),
            MapOp(D0, DomU.Id, g.Ref, 4, GntMap.host_map | GntMap.@readonly),
        };
        Xen.MapGrantRefs(D0, ops);
        Assert.Equal(new short[] { GntSt.okay, GntSt.bad_gntref, GntSt.bad_domain, GntSt.bad_gntref, GntSt.okay }, ops.Select(o => o.Status));
        Assert.Equal(2, D0.MapTrackInUse);
        Assert.Equal(2, DU.GrantTable.ActivePins);
        UnmapOk(D0, ops[0]);
        UnmapOk(D0, ops[4]);
        Revoke(g);
    }

    // ================================================================== GT07

    [Fact]
    public void GT07_Map_ReturnsHandleAndDevBusAddr_SetsReadingAndWriting()
    {
        var g = Grant(DomU, Dom0.Id, fill: 0x3c);
        var mfn = MfnOf(g);
        var op = MapOk(D0, g, 0);
        Assert.True(op.Handle >= 0);
        Assert.Equal(mfn.Value << 12, op.DevBusAddr);
        Assert.True(D0.P2M.TryGet(new GuestFrame(op.HostAddr >> 12), out var mapped, out bool foreign));
        Assert.True(foreign);
        Assert.Equal(mfn, mapped);
        Assert.Equal(0x3c, Xen.Memory.FrameSpan(mapped)[4095]);
        var e = DU.GrantTable.ReadEntry(g.GrantRef);
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, e.Flags);
        Assert.Equal(Dom0.Id.Value, e.DomId);
        Assert.Equal((uint)g.Gfn.Value, e.Frame);
        Assert.Equal(1, DU.GrantTable.ActivePins);
        Assert.Equal(2, Xen.Memory.RefCountOf(mfn));
        Assert.Equal(1, D0.MapTrackInUse);

        UnmapOk(D0, op);
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Assert.False(D0.P2M.TryGet(new GuestFrame(op.HostAddr >> 12), out _, out _));
        Assert.Equal(1, Xen.Memory.RefCountOf(mfn));
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Revoke(g);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GT07_ReadonlyMap_SetsOnlyReading(bool readOnlyGrant)
    {
        var g = Grant(DomU, Dom0.Id, readOnly: readOnlyGrant);
        ushort baseFlags = (ushort)(Gtf.permit_access | (readOnlyGrant ? Gtf.@readonly : 0));
        var op = MapOk(D0, g, 0, GntMap.host_map | GntMap.@readonly);
        Assert.Equal(baseFlags | Gtf.reading, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        UnmapOk(D0, op);
        Assert.Equal(baseFlags, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Revoke(g);
    }

    [Fact]
    public void GT07_PinsCountedPerMapping_FlagsClearWhenTheLastPinGoes()
    {
        var g = Grant(DomU, Dom0.Id);
        var mfn = MfnOf(g);
        var a = MapOk(D0, g, 0);
        var b = MapOk(D0, g, 1);
        Assert.NotEqual(a.Handle, b.Handle);
        Assert.Equal(a.DevBusAddr, b.DevBusAddr);
        Assert.Equal(2, DU.GrantTable.ActivePins);
        Assert.Equal(3, Xen.Memory.RefCountOf(mfn));
        UnmapOk(D0, a);
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Assert.Equal(1, DU.GrantTable.ActivePins);
        Assert.False(DomU.Kernel.Grants.TryEndAccess(g.Ref));
        UnmapOk(D0, b);
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Assert.Equal(1, Xen.Memory.RefCountOf(mfn));
        Revoke(g);
    }

    [Fact]
    public void GT07_WritingClearsWithTheLastWritablePin_ReadingWithTheLastPin()
    {
        var g = Grant(DomU, Dom0.Id);
        var ro1 = MapOk(D0, g, 0, GntMap.host_map | GntMap.@readonly);
        var rw = MapOk(D0, g, 1);
        var ro2 = MapOk(D0, g, 2, GntMap.device_map | GntMap.@readonly);
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        UnmapOk(D0, rw);
        Assert.Equal(Gtf.permit_access | Gtf.reading, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        var rw2 = MapOk(D0, g, 3, GntMap.device_map);
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        UnmapOk(D0, rw2);
        UnmapOk(D0, ro1);
        Assert.Equal(Gtf.permit_access | Gtf.reading, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Assert.Equal(1, DU.GrantTable.ActivePins);
        UnmapOk(D0, ro2);
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Revoke(g);
    }

    // ================================================================== GT08

    [Theory]
    [InlineData(-1)]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(255)]
    [InlineData(256)]
    [InlineData(int.MaxValue)]
    public void GT08_UnknownHandle_IsBadHandle(int handle)
    {
        Assert.Equal(GntSt.bad_handle, Unmap(D0, handle));
        Assert.Equal(GntSt.bad_handle, Unmap(D0, handle, Gpa(D0, 0), 0x1000));
        // With a live mapping around, any other handle is still unknown.
        var g = Grant(DomU, Dom0.Id);
        var op = MapOk(D0, g, 0);
        if (handle != op.Handle) Assert.Equal(GntSt.bad_handle, Unmap(D0, handle));
        Assert.Equal(1, DU.GrantTable.ActivePins);
        UnmapOk(D0, op);
        Revoke(g);
    }

    [Fact]
    public void GT08_SecondUnmapOfAHandle_IsBadHandle()
    {
        var g = Grant(DomU, Dom0.Id);
        var a = MapOk(D0, g, 0);
        var b = MapOk(D0, g, 1);
        UnmapOk(D0, a);
        Assert.Equal(GntSt.bad_handle, Unmap(D0, a.Handle));
        Assert.Equal(GntSt.bad_handle, Unmap(D0, a.Handle, a.HostAddr, a.DevBusAddr));
        // The other mapping is untouched by the failed unmaps.
        Assert.Equal(1, DU.GrantTable.ActivePins);
        Assert.Equal(1, D0.MapTrackInUse);
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        UnmapOk(D0, b);
        Assert.Equal(GntSt.bad_handle, Unmap(D0, b.Handle));
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Revoke(g);
    }

    [Fact]
    public void GT08_DevBusAddrMismatch_IsBadDevAddr_MappingKept()
    {
        var g = Grant(DomU, Dom0.Id);
        var op = MapOk(D0, g, 0);
        foreach (ulong wrong in new[] { op.DevBusAddr + 0x1000, op.DevBusAddr - 0x1000, 0x1000UL, ulong.MaxValue })
        {
            Assert.Equal(GntSt.bad_dev_addr, Unmap(D0, op.Handle, 0, wrong));
            Assert.Equal(GntSt.bad_dev_addr, Unmap(D0, op.Handle, op.HostAddr, wrong));
        }
        // A wrong host address fails too (the code reports bad_virt_addr) and keeps the mapping.
        Assert.NotEqual(GntSt.okay, Unmap(D0, op.Handle, op.HostAddr + 0x1000, 0));
        Assert.Equal(1, D0.MapTrackInUse);
        Assert.Equal(1, DU.GrantTable.ActivePins);
        Assert.Equal(1, D0.P2M.CountForeign());
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        UnmapOk(D0, op);
        Revoke(g);
    }

    [Fact]
    public void GT08_ZeroAddressFields_MeanIgnoreThatPart()
    {
        var g = Grant(DomU, Dom0.Id);
        var a = MapOk(D0, g, 0);
        var b = MapOk(D0, g, 1);
        var c = MapOk(D0, g, 2);
        var d = MapOk(D0, g, 3, GntMap.device_map);
        Assert.Equal(GntSt.okay, Unmap(D0, a.Handle, 0, 0));
        Assert.Equal(GntSt.okay, Unmap(D0, b.Handle, b.HostAddr, 0));
        Assert.Equal(GntSt.okay, Unmap(D0, c.Handle, 0, c.DevBusAddr));
        Assert.Equal(GntSt.okay, Unmap(D0, d.Handle, 0, d.DevBusAddr));
        // Host-mapped slots are gone from the P2M even when the address was not given.
        Assert.Equal(0, D0.P2M.CountForeign());
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Revoke(g);
    }

    [Fact]
    public void GT08_BatchUnmap_EachOpHasItsOwnStatus()
    {
        var g = Grant(DomU, Dom0.Id);
        var a = MapOk(D0, g, 0);
        var b = MapOk(D0, g, 1);
        var ops = new[]
        {
            new GnttabUnmapGrantRef { Handle = a.Handle },
            new GnttabUnmapGrantRef { Handle = a.Handle },
            new GnttabUnmapGrantRef { Handle = 9999 },
            new GnttabUnmapGrantRef { Handle = b.Handle, DevBusAddr = b.DevBusAddr ^ 0x1000 },
        };
        Xen.UnmapGrantRefs(D0, ops);
        Assert.Equal(new short[] { GntSt.okay, GntSt.bad_handle, GntSt.bad_handle, GntSt.bad_dev_addr }, ops.Select(o => o.Status));
        Assert.Equal(1, DU.GrantTable.ActivePins);
        UnmapOk(D0, b);
        Revoke(g);
    }

    // ================================================================== GT09

    [Fact]
    public void GT09_CopyFlagValues()
    {
        Assert.Equal(1 << 0, GntCopy.source_gref);
        Assert.Equal(1 << 1, GntCopy.dest_gref);
    }

    private static void FillPattern(Span<byte> s, int seed)
    {
        for (int i = 0; i < s.Length; i++) s[i] = (byte)((i * 31) ^ seed);
    }

    [Fact]
    public void GT09_GrefToLocal_CopiesTheBytes()
    {
        var g = Grant(DomU, Dom0.Id);
        FillPattern(DomU.Kernel.FrameSpan(g.Gfn), 7);
        var local = LocalPage(Dom0);
        Assert.Equal(GntSt.okay, CopyOne(D0, GrefPtr(g, 100), LocalPtr(local, 50), 3000, GntCopy.source_gref));
        var dst = Dom0.Kernel.FrameSpan(local);
        Assert.True(dst.Slice(50, 3000).SequenceEqual(DomU.Kernel.FrameSpan(g.Gfn).Slice(100, 3000)));
        Assert.True(dst[..50].IndexOfAnyExcept((byte)0) < 0);
        Assert.True(dst[3050..].IndexOfAnyExcept((byte)0) < 0);
        // The whole page: offset 0, len 4096 stays within one page.
        Assert.Equal(GntSt.okay, CopyOne(D0, GrefPtr(g), LocalPtr(local), 4096, GntCopy.source_gref));
        Assert.True(dst.SequenceEqual(DomU.Kernel.FrameSpan(g.Gfn)));
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Dom0.Kernel.FreePage(local);
        Revoke(g);
    }

    [Fact]
    public void GT09_LocalToGref_CopiesTheBytes()
    {
        var g = Grant(DomU, Dom0.Id);
        var local = LocalPage(Dom0);
        FillPattern(Dom0.Kernel.FrameSpan(local), 99);
        Assert.Equal(GntSt.okay, CopyOne(D0, LocalPtr(local, 4000), GrefPtr(g, 10), 96, GntCopy.dest_gref));
        var page = DomU.Kernel.FrameSpan(g.Gfn);
        Assert.True(page.Slice(10, 96).SequenceEqual(Dom0.Kernel.FrameSpan(local).Slice(4000, 96)));
        Assert.True(page[..10].IndexOfAnyExcept((byte)0) < 0);
        Assert.True(page[106..].IndexOfAnyExcept((byte)0) < 0);
        // Local to local through DOMID_SELF.
        var local2 = LocalPage(Dom0);
        Assert.Equal(GntSt.okay, CopyOne(D0, LocalPtr(local), LocalPtr(local2), 4096, 0));
        Assert.True(Dom0.Kernel.FrameSpan(local2).SequenceEqual(Dom0.Kernel.FrameSpan(local)));
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Dom0.Kernel.FreePage(local);
        Dom0.Kernel.FreePage(local2);
        Revoke(g);
    }

    [Fact]
    public void GT09_GrefToGref_CopiesTheBytes_ReadonlySourceIsFine()
    {
        var src = Grant(DomU, Dom0.Id, readOnly: true);
        FillPattern(DomU.Kernel.FrameSpan(src.Gfn), 3);
        var third = Host.CreateGuest(new DomainConfig { RamPages = 64 });
        var dst = Grant(third, Dom0.Id);
        Assert.Equal(GntSt.okay, CopyOne(D0, GrefPtr(src, 2048), GrefPtr(dst, 0), 2048, GntCopy.source_gref | GntCopy.dest_gref));
        Assert.True(third.Kernel.FrameSpan(dst.Gfn)[..2048].SequenceEqual(DomU.Kernel.FrameSpan(src.Gfn)[2048..]));
        Assert.True(third.Kernel.FrameSpan(dst.Gfn)[2048..].IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(Gtf.permit_access | Gtf.@readonly, DU.GrantTable.ReadEntry(src.GrantRef).Flags);
        Assert.Equal(Gtf.permit_access, third.Domain.GrantTable.ReadEntry(dst.GrantRef).Flags);
        // Copy works while the source is also mapped, and leaves that mapping's flags alone.
        var m = MapOk(D0, src, 0, GntMap.host_map | GntMap.@readonly);
        Assert.Equal(GntSt.okay, CopyOne(D0, GrefPtr(src), GrefPtr(dst), 16, GntCopy.source_gref | GntCopy.dest_gref));
        Assert.Equal(Gtf.permit_access | Gtf.@readonly | Gtf.reading, DU.GrantTable.ReadEntry(src.GrantRef).Flags);
        Assert.Equal(1, DU.GrantTable.ActivePins);
        UnmapOk(D0, m);
        Revoke(dst);
        Revoke(src);
    }

    [Theory]
    [InlineData(0, 0, 4097)]
    [InlineData(4000, 0, 97)]
    [InlineData(0, 4000, 97)]
    [InlineData(4095, 0, 2)]
    [InlineData(4096, 0, 1)]
    [InlineData(0, 65535, 1)]
    public void GT09_OffsetPlusLenBeyondPage_IsBadCopyArg(int srcOff, int dstOff, int len)
    {
        var g = Grant(DomU, Dom0.Id);
        var local = LocalPage(Dom0);
        Assert.Equal(GntSt.bad_copy_arg, CopyOne(D0, GrefPtr(g, (ushort)srcOff), LocalPtr(local, (ushort)dstOff), (ushort)len, GntCopy.source_gref));
        Assert.Equal(GntSt.bad_copy_arg, CopyOne(D0, LocalPtr(local, (ushort)srcOff), GrefPtr(g, (ushort)dstOff), (ushort)len, GntCopy.dest_gref));
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Assert.True(DomU.Kernel.FrameSpan(g.Gfn).IndexOfAnyExcept((byte)0) < 0);
        Dom0.Kernel.FreePage(local);
        Revoke(g);
    }

    [Fact]
    public void GT09_FrameOperandOfAnotherDomain_IsPermissionDenied()
    {
        var g = Grant(DomU, Dom0.Id);
        var local = LocalPage(Dom0);
        var foreignFrame = new GnttabCopyPtr { RefOrGfn = g.Gfn.Value, Domain = DomU.Id };
        Assert.Equal(GntSt.permission_denied, CopyOne(D0, foreignFrame, LocalPtr(local), 16, 0));
        Assert.Equal(GntSt.permission_denied, CopyOne(D0, LocalPtr(local), foreignFrame, 16, 0));
        Assert.Equal(GntSt.permission_denied, CopyOne(D0, GrefPtr(g), foreignFrame, 16, GntCopy.source_gref));
        Assert.Equal(GntSt.permission_denied, CopyOne(D0, foreignFrame, GrefPtr(g), 16, GntCopy.dest_gref));
        // Even for a domain that does not exist.
        Assert.Equal(GntSt.permission_denied, CopyOne(D0, new GnttabCopyPtr { RefOrGfn = 1, Domain = Nobody }, LocalPtr(local), 16, 0));
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Dom0.Kernel.FreePage(local);
        Revoke(g);
    }

    [Fact]
    public void GT09_UnknownDomain_IsBadDomain()
    {
        var g = Grant(DomU, Dom0.Id);
        var local = LocalPage(Dom0);
        var ghost = new GnttabCopyPtr { RefOrGfn = g.Ref, Domain = Nobody };
        Assert.Equal(GntSt.bad_domain, CopyOne(D0, ghost, LocalPtr(local), 16, GntCopy.source_gref));
        Assert.Equal(GntSt.bad_domain, CopyOne(D0, LocalPtr(local), ghost, 16, GntCopy.dest_gref));
        Assert.Equal(GntSt.bad_domain, CopyOne(D0, GrefPtr(g), ghost, 16, GntCopy.source_gref | GntCopy.dest_gref));
        Assert.Equal(GntSt.bad_domain, CopyOne(D0, ghost, GrefPtr(g), 16, GntCopy.source_gref | GntCopy.dest_gref));
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Dom0.Kernel.FreePage(local);
        Revoke(g);
    }

    [Fact]
    public void GT09_GrefOperands_GetTheMapErrors()
    {
        var g = Grant(DomU, Dom0.Id);
        var local = LocalPage(Dom0);
        foreach (ulong r in new[] { 512UL, 40000UL, uint.MaxValue, (ulong)uint.MaxValue + 1 })
        {
            var bad = new GnttabCopyPtr { RefOrGfn = r, Domain = DomU.Id };
            Assert.Equal(GntSt.bad_gntref, CopyOne(D0, bad, LocalPtr(local), 8, GntCopy.source_gref));
            Assert.Equal(GntSt.bad_gntref, CopyOne(D0, LocalPtr(local), bad, 8, GntCopy.dest_gref));
        }
        // Never granted / granted to someone else / wrong type: general_error.
        var other = Grant(DomU, new DomainId(5));
        var invalid = new GnttabCopyPtr { RefOrGfn = 300, Domain = DomU.Id };
        Assert.Equal(GntSt.general_error, CopyOne(D0, invalid, LocalPtr(local), 8, GntCopy.source_gref));
        Assert.Equal(GntSt.general_error, CopyOne(D0, GrefPtr(other), LocalPtr(local), 8, GntCopy.source_gref));
        Assert.Equal(GntSt.general_error, CopyOne(D0, LocalPtr(local), GrefPtr(other), 8, GntCopy.dest_gref));
        // Granted GFN empty: bad_page, as for a map.
        uint empty = GrantRaw(DomU, Dom0.Id, new GuestFrame((ulong)DU.RamPages + 1));
        Assert.Equal(GntSt.bad_page, CopyOne(D0, new GnttabCopyPtr { RefOrGfn = empty, Domain = DomU.Id }, LocalPtr(local), 8, GntCopy.source_gref));
        // A failing destination releases the pinned source.
        Assert.Equal(GntSt.general_error, CopyOne(D0, GrefPtr(g), GrefPtr(other), 8, GntCopy.source_gref | GntCopy.dest_gref));
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        RevokeRaw(DomU, empty);
        Revoke(other);
        Dom0.Kernel.FreePage(local);
        Revoke(g);
    }

    [Fact]
    public void GT09_WritingThroughAReadonlyGrant_IsGeneralError()
    {
        var ro = Grant(DomU, Dom0.Id, readOnly: true, fill: 0x11);
        var local = LocalPage(Dom0);
        Dom0.Kernel.FrameSpan(local).Fill(0xee);
        Assert.Equal(GntSt.general_error, CopyOne(D0, LocalPtr(local), GrefPtr(ro), 64, GntCopy.dest_gref));
        Assert.Equal(GntSt.general_error, CopyOne(D0, GrefPtr(ro), GrefPtr(ro, 100), 64, GntCopy.source_gref | GntCopy.dest_gref));
        Assert.True(DomU.Kernel.FrameSpan(ro.Gfn).IndexOfAnyExcept((byte)0x11) < 0);
        Assert.Equal(GntSt.okay, CopyOne(D0, GrefPtr(ro), LocalPtr(local), 64, GntCopy.source_gref));
        Assert.Equal(0x11, Dom0.Kernel.FrameSpan(local)[63]);
        Assert.Equal(0xee, Dom0.Kernel.FrameSpan(local)[64]);
        Assert.Equal(Gtf.permit_access | Gtf.@readonly, DU.GrantTable.ReadEntry(ro.GrantRef).Flags);
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Dom0.Kernel.FreePage(local);
        Revoke(ro);
    }

    [Fact]
    public void GT09_LenZero_IsOkay_AndCopiesNothing()
    {
        var g = Grant(DomU, Dom0.Id, fill: 0x5a);
        var local = LocalPage(Dom0);
        Assert.Equal(GntSt.okay, CopyOne(D0, GrefPtr(g), LocalPtr(local), 0, GntCopy.source_gref));
        Assert.Equal(GntSt.okay, CopyOne(D0, GrefPtr(g, 4096), LocalPtr(local, 4096), 0, GntCopy.source_gref));
        // Nothing is looked at: not even the operands.
        Assert.Equal(GntSt.okay, CopyOne(D0, new GnttabCopyPtr { RefOrGfn = 1, Domain = Nobody }, new GnttabCopyPtr { RefOrGfn = 77777, Domain = DomU.Id }, 0, GntCopy.source_gref | GntCopy.dest_gref));
        Assert.True(Dom0.Kernel.FrameSpan(local).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Dom0.Kernel.FreePage(local);
        Revoke(g);
    }

    [Fact]
    public void GT09_Batch_EachOpHasItsOwnStatus()
    {
        var g = Grant(DomU, Dom0.Id, fill: 0x21);
        var local = LocalPage(Dom0);
        var ops = new[]
        {
            new GnttabCopy { Source = GrefPtr(g), Dest = LocalPtr(local), Len = 8, Flags = GntCopy.source_gref },
            new GnttabCopy { Source = GrefPtr(g, 4090), Dest = LocalPtr(local), Len = 8, Flags = GntCopy.source_gref },
            new GnttabCopy { Source = new GnttabCopyPtr { RefOrGfn = g.Ref, Domain = Nobody }, Dest = LocalPtr(local), Len = 8, Flags = GntCopy.source_gref },
            new GnttabCopy { Source = new GnttabCopyPtr { RefOrGfn = g.Gfn.Value, Domain = DomU.Id }, Dest = LocalPtr(local), Len = 8 },
            new GnttabCopy { Source = GrefPtr(g), Dest = LocalPtr(local, 8), Len = 8, Flags = GntCopy.source_gref },
        };
        Xen.Copy(D0, ops);
        Assert.Equal(new short[] { GntSt.okay, GntSt.bad_copy_arg, GntSt.bad_domain, GntSt.permission_denied, GntSt.okay }, ops.Select(o => o.Status));
        Assert.True(Dom0.Kernel.FrameSpan(local)[..16].IndexOfAnyExcept((byte)0x21) < 0);
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Dom0.Kernel.FreePage(local);
        Revoke(g);
    }

    // ================================================================== GT10

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GT10_EndAccessFailsWhileMapped_MappingKeepsWorking_SucceedsAfterUnmap(bool readOnlyMap)
    {
        var g = Grant(DomU, Dom0.Id);
        var op = MapOk(D0, g, 0, GntMap.host_map | (readOnlyMap ? GntMap.@readonly : 0));
        var before = DU.GrantTable.ReadEntry(g.GrantRef);
        Assert.False(DU.GrantTable.TryEndAccess(g.GrantRef));
        Assert.False(DomU.Kernel.Grants.TryEndAccess(g.Ref));
        Assert.Equal(before, DU.GrantTable.ReadEntry(g.GrantRef));   // nothing revoked

        // The mapping still works both ways through the machine frame.
        Assert.True(D0.P2M.TryGet(new GuestFrame(op.HostAddr >> 12), out var mfn, out _));
        var seen = Xen.Memory.FrameSpan(mfn);
        if (!readOnlyMap)
        {
            "through the mapping"u8.CopyTo(seen[200..]);
            Assert.True(DomU.Kernel.FrameSpan(g.Gfn).Slice(200, 19).SequenceEqual("through the mapping"u8));
        }
        "from the granter"u8.CopyTo(DomU.Kernel.FrameSpan(g.Gfn)[1000..]);
        Assert.True(seen.Slice(1000, 16).SequenceEqual("from the granter"u8));
        // The entry was not revoked: further maps still work too.
        var again = MapOk(D0, g, 1, GntMap.host_map | GntMap.@readonly);
        Assert.False(DU.GrantTable.TryEndAccess(g.GrantRef));
        UnmapOk(D0, again);
        Assert.False(DU.GrantTable.TryEndAccess(g.GrantRef));

        UnmapOk(D0, op);
        Assert.True(DU.GrantTable.TryEndAccess(g.GrantRef));
        Assert.Equal(default, DU.GrantTable.ReadEntry(g.GrantRef));
        var late = MapOp(D0, DomU.Id, g.Ref, 0);
        MapFails(D0, ref late, GntSt.general_error);
        DomU.Kernel.Grants.Free(g.Ref);
        DomU.Kernel.FreePage(g.Gfn);
    }

    [Fact]
    public void GT10_KernelEndAccess_IsDeferredUntilTheLastUnmap()
    {
        var g = Grant(DomU, Dom0.Id);
        var a = MapOk(D0, g, 0);
        var b = MapOk(D0, g, 1, GntMap.host_map | GntMap.@readonly);
        int ramFree = DomU.Kernel.Ram.FreeCount;
        // The page is handed over with the end of access: the deferred entry holds it (XSA-396).
        Assert.False(DomU.Kernel.Grants.EndAccess(g.Ref, g.Gfn));
        Assert.Equal(1, DomU.Kernel.DeferredReclaims);
        Assert.Equal(1, DomU.Kernel.Pages.CountOf(g.Gfn));
        UnmapOk(D0, a);
        Assert.Equal(ramFree, DomU.Kernel.Ram.FreeCount);
        Assert.Equal(1, DomU.Kernel.DeferredReclaims);
        UnmapOk(D0, b);
        Assert.Equal(ramFree + 1, DomU.Kernel.Ram.FreeCount);   // freed by the reclaim, after the last unmap
        Assert.Equal(0, DomU.Kernel.Pages.CountOf(g.Gfn));
        Assert.Equal(0, DomU.Kernel.DeferredReclaims);
        Assert.Equal(default, DU.GrantTable.ReadEntry(g.GrantRef));
        Assert.Equal(0, DomU.Kernel.GrantRefsInUse);
    }

    // ================================================================== GT11

    [Fact]
    public void GT11_DestroyedGranter_PageStaysAliveWhileMapped_HeldRefsMapAgain_ZombieGoesWithLastUnmap()
    {
        long framesBefore = Xen.FramesInUse;
        var victim = Host.CreateGuest(new DomainConfig { RamPages = 64 });
        var g1 = Grant(victim, Dom0.Id);
        var g2 = Grant(victim, Dom0.Id);
        var g3 = Grant(victim, Dom0.Id);   // granted, never mapped
        "still here"u8.CopyTo(victim.Kernel.FrameSpan(g1.Gfn));
        var m1 = MapOk(D0, g1, 0);
        var m2 = MapOk(D0, g2, 1, GntMap.host_map | GntMap.@readonly);
        var victimId = victim.Id;
        var mfn1 = new MachineFrame(m1.DevBusAddr >> 12);
        Assert.True(Xen.FramesInUse > framesBefore);

        Host.DestroyGuest(victim);
        Assert.False(Xen.TryGetDomain(victimId, out _));
        Assert.Equal(1, Xen.ZombieCount);
        Assert.True(victim.Domain.IsDying);
        // The mapped pages live on: readable and writable through dom0's P2M.
        Assert.True(D0.P2M.TryGet(new GuestFrame(m1.HostAddr >> 12), out var seen, out bool foreign));
        Assert.True(foreign);
        Assert.Equal(mfn1, seen);
        Assert.True(Xen.Memory.FrameSpan(seen)[..10].SequenceEqual("still here"u8));
        "and writable"u8.CopyTo(Xen.Memory.FrameSpan(seen)[100..]);
        Assert.True(Xen.Memory.FrameSpan(mfn1).Slice(100, 12).SequenceEqual("and writable"u8));
        Assert.Equal(1, Xen.Memory.RefCountOf(mfn1));   // the granter's own reference went with its RAM; the pin holds it

        // As real Xen 4.17 (the real-Xen stage's XD03+XD04 probes): the dying domain's grant whose page is
        // still pinned maps again, onto the same frame (the active entry's frame); one whose page nobody held
        // fails at the frame lookup (its RAM went back): bad_page. A copy fails either way: bad_page for the
        // unpinned one, bad_domain for the held one (the dying domain is refused after the frame lookup).
        var again = MapOk(D0, g1, 5);
        Assert.Equal(mfn1, new MachineFrame(again.DevBusAddr >> 12));
        var op3 = MapOp(D0, victimId, g3.Ref, 6);
        MapFails(D0, ref op3, GntSt.bad_page);
        var local = LocalPage(Dom0);
        Assert.Equal(GntSt.bad_domain, CopyOne(D0, GrefPtr(g1), LocalPtr(local), 8, GntCopy.source_gref));
        Assert.Equal(GntSt.bad_page, CopyOne(D0, GrefPtr(g3), LocalPtr(local), 8, GntCopy.source_gref));
        UnmapOk(D0, again);

        UnmapOk(D0, m1);
        Assert.Equal(1, Xen.ZombieCount);   // g2 is still mapped
        Assert.Equal(0, Xen.Memory.RefCountOf(mfn1));   // nobody else held g1's page: freed
        UnmapOk(D0, m2);
        Assert.Equal(0, Xen.ZombieCount);
        Assert.Equal(GntSt.bad_handle, Unmap(D0, m2.Handle));
        Dom0.Kernel.FreePage(local);
        Assert.Equal(framesBefore, Xen.FramesInUse);
    }

    [Fact]
    public void GT11_DestroyedGranterWithNothingMapped_IsNoZombie()
    {
        long framesBefore = Xen.FramesInUse;
        var victim = Host.CreateGuest(new DomainConfig { RamPages = 64, MaxGrantFrames = 4 });
        var refs = new uint[2000];
        Assert.Equal(0, victim.Kernel.Grants.Allocate(refs));   // grows the table to 4 frames
        var g = Grant(victim, Dom0.Id);
        var m = MapOk(D0, g, 0);
        UnmapOk(D0, m);
        Host.DestroyGuest(victim);
        Assert.Equal(0, Xen.ZombieCount);
        Assert.Equal(framesBefore, Xen.FramesInUse);
        var op = MapOp(D0, victim.Id, g.Ref, 0);
        MapFails(D0, ref op, GntSt.bad_domain);
    }

    [Fact]
    public void GT11_DestroyedMapper_ItsMappingsAreUnmapped()
    {
        long framesBefore = Xen.FramesInUse;
        var mapper = Host.CreateGuest(new DomainConfig { RamPages = 64 });
        var g = Grant(DomU, mapper.Id);
        var a = MapOk(mapper.Domain, g, 0);
        var b = MapOk(mapper.Domain, g, 1, GntMap.device_map | GntMap.@readonly);
        Assert.Equal(2, DU.GrantTable.ActivePins);
        Host.DestroyGuest(mapper);
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(g.GrantRef).Flags);
        Assert.Equal(1, Xen.Memory.RefCountOf(MfnOf(g)));
        Assert.Equal(0, Xen.ZombieCount);
        _ = a; _ = b;
        Revoke(g);
        Assert.Equal(framesBefore, Xen.FramesInUse);
    }
}
