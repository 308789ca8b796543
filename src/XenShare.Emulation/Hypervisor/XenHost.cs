using System.Collections.Concurrent;
using System.Diagnostics;
using XenShare.Abi;

namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// The emulated hypervisor: machine memory, domains, the grant-table hypercalls with Xen's status codes and
/// check order (GT01-GT11), each over a batch of ops as GNTTABOP_* takes them, and the memory reservation
/// calls. The event-channel hypercalls are <see cref="EventChannels"/>; the consistency and leak checks are
/// <see cref="HypervisorInvariants"/>. Knows nothing of Linux.
/// </summary>
/// <remarks>
/// Locks, in the order they may be taken: <c>_domainLock</c> (domain create/destroy, zombie list) &lt;
/// a domain's <see cref="GrantTable"/> lock &lt; <see cref="MachineMemory"/>'s allocator lock. A
/// maptrack shard lock is a leaf taken alone; so is the <see cref="EventChannelOps"/> lock, and upcalls
/// into kernels are made after releasing it. Grant map/unmap/copy hold at most one lock at a time.
/// The <see cref="Isolation"/> monitor's findings are built (every grant table scanned under its own lock,
/// one at a time) from the thread that caused them, with no lock of this type held; a finding raised while
/// a grant table grows would scan with that table's lock held, which only a broken frame count can cause.
/// </remarks>
public sealed class XenHost : IDisposable
{
    private readonly object _domainLock = new();
    private readonly ConcurrentDictionary<ushort, Domain> _domains = new();
    private readonly List<Domain> _zombies = new();
    private readonly long _initialFreeFrames;
    private int _nextDomainToken;   // guarded by _domainLock: a unique id per domain ever created
    private bool _disposed;

    /// <summary>Creates a host with <paramref name="machineFrames"/> frames of machine memory (default 1 GiB)
    /// that places domain RAM as <paramref name="placement"/> says (DM01).</summary>
    public XenHost(int machineFrames = 262144, MachinePlacement placement = MachinePlacement.Extents)
    {
        if (!Enum.IsDefined(placement)) throw new ArgumentOutOfRangeException(nameof(placement));
        Placement = placement;
        Memory = new MachineMemory(machineFrames) { Faults = Faults };
        Memory.FrameHazard = (kind, frame, owner) => Report(kind, owner, frame, null);
        _initialFreeFrames = Memory.FreeFrames;
        EventChannels = new EventChannelOps(this);
    }

    /// <summary>The event-channel hypercalls (EVTCHNOP_*).</summary>
    public EventChannelOps EventChannels { get; }

    /// <summary>The cross-domain use-after-free detector of this host (see <see cref="IsolationMonitor"/>).</summary>
    public IsolationMonitor Isolation { get; } = new();

    /// <summary>The machine memory.</summary>
    public MachineMemory Memory { get; }

    /// <summary>How domain RAM is placed in machine memory (DM01; a direct-mapped domain's RAM is one
    /// contiguous run either way).</summary>
    public MachinePlacement Placement { get; }

    /// <summary>Fault injection for every allocation point of this host and its kernels (off by default).</summary>
    public FaultInjector Faults { get; } = new();

    /// <summary>Live (not dying) domains.</summary>
    public IReadOnlyCollection<Domain> Domains => (IReadOnlyCollection<Domain>)_domains.Values;

    /// <summary>Domains destroyed while others still map their pages (GT11).</summary>
    public int ZombieCount { get { lock (_domainLock) return _zombies.Count; } }

    /// <summary>Creates a domain with its RAM populated, placed in machine memory as DM01 says: a
    /// direct-mapped domain (<see cref="DomainConfig.DirectMapped"/>; by default dom0 on Arm64) gets one
    /// machine-contiguous run, any other domain extents or scattered frames (<see cref="Placement"/>).
    /// Throws <see cref="InvalidOperationException"/>, with nothing kept, when memory cannot hold it.</summary>
    public Domain CreateDomain(DomainConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        lock (_domainLock)
        {
            ushort id = config.Id?.Value ?? NextFreeId();
            if (id >= GrantTableConstants.DOMID_SELF || _domains.ContainsKey(id)) throw new ArgumentException($"domain id {id} is in use or invalid");
            bool directMapped = config.DirectMapped ?? (id == DomainId.Dom0.Value && config.Type == DomainType.Arm64);
            int token = ++_nextDomainToken;
            var grants = new GrantTable(Memory, new DomainId(id), config.MaxGrantFrames, token);
            var d = new Domain(new DomainId(id), config.Type, config.RamPages, config.UnpopulatedPages, grants, config.MaptrackFrames, directMapped) { Token = token };
            d.MapTrack.Faults = Faults;
            int placed = directMapped ? PlaceBank(d) : Placement == MachinePlacement.Fragmented ? PlaceScattered(d) : PlaceExtents(d);
            if (placed < d.RamPages)
            {
                ReleaseRam(d, placed);
                grants.Free();
                throw new InvalidOperationException(directMapped
                    ? $"machine memory exhausted creating {d}: no free contiguous run of {d.RamPages} frames for its direct-mapped RAM"
                    : $"machine memory exhausted creating {d}");
            }
            _domains[id] = d;
            return d;
        }
    }

    /// <summary>A direct-mapped domain's RAM: one contiguous run, GFN g at MFN base + g. Returns the
    /// number of GFNs placed (all or none).</summary>
    private int PlaceBank(Domain d)
    {
        if (d.RamPages == 0) return 0;
        if (!Memory.TryAllocateBank(d.Id, d.Token, d.RamPages, out var first)) return 0;
        d.DirectMapBase = first;
        for (int g = 0; g < d.RamPages; g++) d.P2M.SetRam(new GuestFrame((ulong)g), new MachineFrame(first.Value + (ulong)g));
        return d.RamPages;
    }

    /// <summary>Extents placement: 2 MiB extents while aligned free runs exist, else the largest smaller
    /// power of two; each extent below the previous one when memory allows. Returns the GFNs placed.</summary>
    private int PlaceExtents(Domain d)
    {
        const int MaxOrder = 9;   // 2 MiB
        int g = 0, order = MaxOrder, below = Memory.FrameCount, avoid = -1;
        while (g < d.RamPages)
        {
            int want = Math.Min(order, System.Numerics.BitOperations.Log2((uint)(d.RamPages - g)));
            if (!Memory.TryAllocateExtent(d.Id, d.Token, want, below, avoid, out var first, out int frames)) return g;
            for (int i = 0; i < frames; i++) d.P2M.SetRam(new GuestFrame((ulong)(g + i)), new MachineFrame(first.Value + (ulong)i));
            g += frames;
            // No aligned run of a larger order was free a moment ago: do not look for one again.
            if (frames < 1 << want) order = System.Numerics.BitOperations.Log2((uint)frames);
            below = (int)first.Value;
            avoid = below + frames;
        }
        return g;
    }

    /// <summary>Fragmented placement: one scattered frame per GFN, never next to the previous GFN's frame
    /// while memory allows. Returns the GFNs placed.</summary>
    private int PlaceScattered(Domain d)
    {
        var previous = default(MachineFrame);
        for (int g = 0; g < d.RamPages; g++)
        {
            if (!Memory.TryAllocateScattered(d.Id, d.Token, previous, out var mfn)) return g;
            d.P2M.SetRam(new GuestFrame((ulong)g), mfn);
            previous = mfn;
        }
        return d.RamPages;
    }

    private ushort NextFreeId()
    {
        for (ushort i = 0; i < GrantTableConstants.DOMID_SELF; i++) if (!_domains.ContainsKey(i)) return i;
        throw new InvalidOperationException("no free domain id");
    }

    private void ReleaseRam(Domain d, int upTo)
    {
        for (int g = 0; g < upTo; g++)
            if (d.P2M.TryRemoveRam(new GuestFrame((ulong)g), out var mfn)) Memory.Put(mfn);
    }

    /// <summary>Looks up a live domain.</summary>
    public bool TryGetDomain(DomainId id, out Domain domain)
    {
        if (_domains.TryGetValue(id.Value, out var d) && !d.IsDying) { domain = d; return true; }
        domain = null!;
        return false;
    }

    /// <summary>Whether a domain exists: alive, or a zombie (dying, some of its pages still mapped elsewhere).</summary>
    public bool DomainExists(DomainId id) => TryGetGranter(id, out _);

    /// <summary>The domain a grant operation names: a live one, or a dying one that Xen still keeps (GT11: real
    /// Xen 4.17 maps a dying domain's grant whose page another mapping still holds, through the active entry's
    /// frame; a grant whose page nobody held fails at its frame lookup, since the domain's RAM went back).
    /// Gone domains are not found (bad_domain).</summary>
    private bool TryGetGranter(DomainId id, out Domain domain)
    {
        if (_domains.TryGetValue(id.Value, out var d) && !d.IsDying) { domain = d; return true; }
        lock (_domainLock)
            foreach (var z in _zombies)
                if (z.Id == id) { domain = z; return true; }
        domain = null!;
        return false;
    }

    /// <summary>Destroys a domain: its own mappings are unmapped, its ports closed and its RAM released;
    /// pages that other domains still map stay alive and the domain lingers as a zombie until the last
    /// foreign mapping goes (GT11).</summary>
    public void DestroyDomain(DomainId id)
    {
        Domain d;
        lock (_domainLock)
        {
            if (!_domains.TryRemove(id.Value, out d!)) throw new ArgumentException($"no domain {id}");
            d.IsDying = true;
            _zombies.Add(d);   // findable by grant operations while it dies (GT11)
        }
        var unmap = d.MapTrack.LiveHandles().Select(h => new GnttabUnmapGrantRef { Handle = h }).ToArray();
        UnmapGrantRefs(d, unmap);   // one batch; the statuses do not matter here
        EventChannels.CloseAll(d);
        ReleaseRam(d, d.RamPages);
        d.Sink = null;
        lock (_domainLock) d.TornDown = true;
        ReapIfZombie(d);   // gone now unless another domain still maps its pages
    }

    /// <summary>Drops one pin; when it was the entry's last, tells the granter's kernel (deferred reclaim)
    /// and reaps the granter if it is a zombie with nothing pinned any more.</summary>
    private void UnpinAndNotify(Domain granter, GrantRef gref, bool write)
    {
        if (granter.GrantTable.Unpin(gref, write)) NotifyUnpinned(granter, [gref.Value]);
    }

    /// <summary>The upcalls after a batch dropped the last pins of <paramref name="refs"/> (no lock held).</summary>
    private void NotifyUnpinned(Domain granter, ReadOnlySpan<uint> refs)
    {
        if (refs.IsEmpty) return;
        foreach (uint r in refs) granter.Sink?.OnGrantUnpinned(new GrantRef(r));
        ReapIfZombie(granter);
    }

    private void ReapIfZombie(Domain granter)
    {
        if (!granter.IsDying || granter.GrantTable.ActivePins != 0) return;
        lock (_domainLock)
        {
            // Pins are re-read under the domain lock: a new map of the zombie's grant (GT11) may have come in.
            if (granter.TornDown && granter.GrantTable.ActivePins == 0 && _zombies.Remove(granter)) granter.GrantTable.Free();
        }
    }

    // ---------------------------------------------------------------- grant table hypercalls

    /// <summary>GNTTABOP_query_size: (nr_frames, max_nr_frames) (GT03).</summary>
    public static (int NrFrames, int MaxNrFrames) QuerySize(Domain caller)
    {
        ArgumentNullException.ThrowIfNull(caller);
        return (caller.GrantTable.NrFrames, caller.GrantTable.MaxFrames);
    }

    /// <summary>GNTTABOP_map_grant_ref over a batch (a single map is a batch of one); each op gets its own
    /// status, exactly as it would alone (GT06). Runs of ops on the same granter share one grant-table
    /// lock (P1).</summary>
    public void MapGrantRefs(Domain caller, Span<GnttabMapGrantRef> ops)
    {
        ArgumentNullException.ThrowIfNull(caller);
        const int Chunk = 64;
        Span<int> handles = stackalloc int[Chunk];
        for (int start = 0; start < ops.Length;)
        {
            // A run: consecutive ops that pass the flag checks and name the same live granter.
            var first = ops[start];
            if (!MapFlagsOk(caller, first.Flags) || !TryGetGranter(first.Dom, out var granter))
            {
                MapOne(caller, ref ops[start]);
                start++;
                continue;
            }
            int end = start + 1;
            while (end < ops.Length && end - start < Chunk && ops[end].Dom == first.Dom && MapFlagsOk(caller, ops[end].Flags)) end++;
            int n = end - start;
            int got = caller.MapTrack.AllocateMany(handles[..n]);
            if (got < n) caller.MapTrack.FreeMany(handles[..got]);
            if (got < n)
            {
                for (int i = start; i < end; i++) MapOne(caller, ref ops[i]);   // exhaustion: op by op
                start = end;
                continue;
            }
            var table = granter.GrantTable;
            lock (table.SyncRoot)
            {
                for (int i = 0; i < n; i++)
                {
                    ref var op = ref ops[start + i];
                    op.Status = table.PinLocked(op.Ref, caller.Id, (op.Flags & GntMap.@readonly) == 0, granter.P2M, out var mfn);
                    op.DevBusAddr = XenPage.AddressOf(mfn.Value);
                }
            }
            for (int i = 0; i < n; i++)
            {
                ref var op = ref ops[start + i];
                int handle = handles[i];
                if (op.Status != GntSt.okay) { op.Handle = -1; op.DevBusAddr = 0; caller.MapTrack.Free(handle); continue; }
                var mfn = new MachineFrame(XenPage.FrameOf(op.DevBusAddr));
                if ((op.Flags & GntMap.host_map) != 0 && !caller.P2M.TryInstallForeign(new GuestFrame(XenPage.FrameOf(op.HostAddr)), mfn))
                {
                    UnpinAndNotify(granter, op.Ref, (op.Flags & GntMap.@readonly) == 0);
                    caller.MapTrack.Free(handle);
                    op.Handle = -1;
                    op.DevBusAddr = 0;
                    op.Status = GntSt.general_error;
                    continue;
                }
                caller.MapTrack.Set(handle, granter, mfn.Value, op.HostAddr, op.Ref.Value, op.Flags);
                op.Handle = handle;
            }
            start = end;
        }
    }

    private static bool MapFlagsOk(Domain caller, uint flags) =>
        (flags & (GntMap.host_map | GntMap.device_map)) != 0 &&
        !(caller.IsAutoTranslated &&
          ((caller.IsX86 && (flags & GntMap.device_map) != 0) || (flags & (GntMap.application_map | GntMap.contains_pte)) != 0));

    /// <summary>One op of a GNTTABOP_map_grant_ref batch on its own (GT06 check order): the ops the batch
    /// cannot run as part of a run.</summary>
    private short MapOne(Domain caller, ref GnttabMapGrantRef op)
    {
        uint flags = op.Flags;
        op.Handle = -1;
        op.DevBusAddr = 0;
        if ((flags & (GntMap.host_map | GntMap.device_map)) == 0) return op.Status = GntSt.bad_gntref;
        if (caller.IsAutoTranslated &&
            ((caller.IsX86 && (flags & GntMap.device_map) != 0) || (flags & (GntMap.application_map | GntMap.contains_pte)) != 0))
            return op.Status = GntSt.general_error;
        if (!TryGetGranter(op.Dom, out var granter)) return op.Status = GntSt.bad_domain;
        int handle = caller.MapTrack.Allocate();
        if (handle < 0) return op.Status = GntSt.no_space;
        bool write = (flags & GntMap.@readonly) == 0;
        short st = granter.GrantTable.Pin(op.Ref, caller.Id, write, granter.P2M, out var mfn);
        if (st != GntSt.okay) { caller.MapTrack.Free(handle); return op.Status = st; }
        // Auto-translated guests get the frame in their P2M; PV guests get a P2M override (Linux's
        // set_foreign_p2m_mapping), modelled the same way.
        if ((flags & GntMap.host_map) != 0 &&
            !caller.P2M.TryInstallForeign(new GuestFrame(XenPage.FrameOf(op.HostAddr)), mfn))
        {
            UnpinAndNotify(granter, op.Ref, write);
            caller.MapTrack.Free(handle);
            return op.Status = GntSt.general_error;
        }
        caller.MapTrack.Set(handle, granter, mfn.Value, op.HostAddr, op.Ref.Value, flags);
        op.Handle = handle;
        op.DevBusAddr = XenPage.AddressOf(mfn.Value);
        return op.Status = GntSt.okay;
    }

    /// <summary>GNTTABOP_unmap_grant_ref over a batch (a single unmap is a batch of one; GT08): handles are
    /// taken from their maptrack shards, and runs on the same granter are unpinned under one grant-table
    /// lock (P1). Each op gets its own status.</summary>
    public void UnmapGrantRefs(Domain caller, Span<GnttabUnmapGrantRef> ops)
    {
        ArgumentNullException.ThrowIfNull(caller);
        const int Chunk = 64;
        Span<MapTrack.Entry> taken;
        Span<uint> unpinned = stackalloc uint[Chunk];
        MapTrack.Entry[]? buffer = null;
        for (int start = 0; start < ops.Length; start += Chunk)
        {
            int n = Math.Min(Chunk, ops.Length - start);
            buffer ??= System.Buffers.ArrayPool<MapTrack.Entry>.Shared.Rent(Chunk);
            taken = buffer.AsSpan(0, n);
            for (int i = 0; i < n; i++)
            {
                ref var op = ref ops[start + i];
                caller.MapTrack.TryTake(op.Handle, op.HostAddr, op.DevBusAddr, out taken[i], out op.Status);
            }
            for (int i = 0; i < n; i++)
                if (ops[start + i].Status == GntSt.okay && (taken[i].Flags & GntMap.host_map) != 0)
                    caller.P2M.TryRemoveForeign(new GuestFrame(XenPage.FrameOf(taken[i].HostAddr)), new MachineFrame(taken[i].Mfn));
            for (int i = 0; i < n;)
            {
                if (ops[start + i].Status != GntSt.okay) { i++; continue; }
                var granter = taken[i].Granter!;
                int end = i + 1;
                while (end < n && (ops[start + end].Status != GntSt.okay || taken[end].Granter == granter)) end++;
                int nUnpinned = 0;
                lock (granter.GrantTable.SyncRoot)
                    for (int k = i; k < end; k++)
                    {
                        if (ops[start + k].Status != GntSt.okay) continue;
                        if (granter.GrantTable.UnpinLocked(new GrantRef(taken[k].Ref), (taken[k].Flags & GntMap.@readonly) == 0, out _))
                            unpinned[nUnpinned++] = taken[k].Ref;
                    }
                for (int k = i; k < end; k++)
                    if (ops[start + k].Status == GntSt.okay) granter.GrantTable.PutFrame(new MachineFrame(taken[k].Mfn));
                NotifyUnpinned(granter, unpinned[..nUnpinned]);
                i = end;
            }
            taken.Clear();
        }
        if (buffer is not null) System.Buffers.ArrayPool<MapTrack.Entry>.Shared.Return(buffer, clearArray: true);
    }

    /// <summary>GNTTABOP_copy over a batch (GT09). Runs of ops whose source is a grant of the same domain
    /// pin and unpin their sources under one grant-table lock each way (P4); statuses are exactly those of
    /// op-by-op processing.</summary>
    public void Copy(Domain caller, Span<GnttabCopy> ops)
    {
        ArgumentNullException.ThrowIfNull(caller);
        const int Chunk = 64;
        Span<ulong> srcMfns = stackalloc ulong[Chunk];
        Span<bool> pinned = stackalloc bool[Chunk];
        Span<uint> unpinned = stackalloc uint[Chunk];
        int i = 0;
        while (i < ops.Length)
        {
            if (!BatchableCopy(ops[i]) || !TryGetDomain(CopySourceDomain(caller, ops[i]), out var granter))
            {
                ops[i].Status = CopyOne(caller, ref ops[i]);
                i++;
                continue;
            }
            int end = i + 1;
            while (end < ops.Length && end - i < Chunk && BatchableCopy(ops[end]) && CopySourceDomain(caller, ops[end]) == granter.Id) end++;
            int n = end - i;
            var table = granter.GrantTable;
            lock (table.SyncRoot)
                for (int k = 0; k < n; k++)
                {
                    ref var op = ref ops[i + k];
                    MachineFrame m = default;
                    op.Status = op.Source.RefOrGfn > uint.MaxValue ? GntSt.bad_gntref
                        : table.PinLocked(new GrantRef((uint)op.Source.RefOrGfn), caller.Id, write: false, granter.P2M, out m);
                    pinned[k] = op.Status == GntSt.okay;
                    srcMfns[k] = pinned[k] ? m.Value : 0;
                }
            for (int k = 0; k < n; k++)
            {
                if (!pinned[k]) continue;
                ref var op = ref ops[i + k];
                bool dstGref = (op.Flags & GntCopy.dest_gref) != 0;
                short st;
                if (!dstGref && (op.Dest.Domain == caller.Id || op.Dest.Domain.Value == GrantTableConstants.DOMID_SELF))
                {
                    // The common backend case, a local frame: resolved through the caller's P2M directly.
                    st = caller.P2M.TryGet(new GuestFrame(op.Dest.RefOrGfn), out var local, out bool foreign) && !foreign ? GntSt.okay : GntSt.general_error;
                    if (st == GntSt.okay) CopyBytes(new MachineFrame(srcMfns[k]), op.Source.Offset, local, op.Dest.Offset, op.Len);
                }
                else
                {
                    st = AcquireCopyOperand(caller, op.Dest, dstGref, write: true, out var dstDom, out var dstMfn);
                    if (st == GntSt.okay)
                    {
                        CopyBytes(new MachineFrame(srcMfns[k]), op.Source.Offset, dstMfn, op.Dest.Offset, op.Len);
                        ReleaseCopyOperand(dstDom, op.Dest, dstGref, write: true, dstMfn);
                    }
                }
                op.Status = st;
            }
            int nUnpinned = 0;
            lock (table.SyncRoot)
                for (int k = 0; k < n; k++)
                    if (pinned[k] && table.UnpinLocked(new GrantRef((uint)ops[i + k].Source.RefOrGfn), write: false, out _))
                        unpinned[nUnpinned++] = (uint)ops[i + k].Source.RefOrGfn;
            for (int k = 0; k < n; k++) if (pinned[k]) table.PutFrame(new MachineFrame(srcMfns[k]));
            NotifyUnpinned(granter, unpinned[..nUnpinned]);
            i = end;
        }
    }

    private unsafe void CopyBytes(MachineFrame src, int srcOffset, MachineFrame dst, int dstOffset, int length) =>
        Buffer.MemoryCopy(Memory.FramePointer(src) + srcOffset, Memory.FramePointer(dst) + dstOffset, MachineMemory.PageSize - dstOffset, length);

    /// <summary>A copy whose source is a grant and whose arguments pass the checks made before any
    /// operand is looked at (so batching cannot change its status).</summary>
    private static bool BatchableCopy(in GnttabCopy op) =>
        (op.Flags & GntCopy.source_gref) != 0 && op.Len != 0 &&
        op.Source.Offset + op.Len <= MachineMemory.PageSize && op.Dest.Offset + op.Len <= MachineMemory.PageSize;

    private static DomainId CopySourceDomain(Domain caller, in GnttabCopy op) =>
        op.Source.Domain.Value == GrantTableConstants.DOMID_SELF ? caller.Id : op.Source.Domain;

    private short CopyOne(Domain caller, ref GnttabCopy op)
    {
        if (op.Source.Offset + op.Len > MachineMemory.PageSize || op.Dest.Offset + op.Len > MachineMemory.PageSize)
            return GntSt.bad_copy_arg;
        if (op.Len == 0) return GntSt.okay;
        bool srcGref = (op.Flags & GntCopy.source_gref) != 0, dstGref = (op.Flags & GntCopy.dest_gref) != 0;
        short st = AcquireCopyOperand(caller, op.Source, srcGref, write: false, out var srcDom, out var srcMfn);
        if (st != GntSt.okay) return st;
        st = AcquireCopyOperand(caller, op.Dest, dstGref, write: true, out var dstDom, out var dstMfn);
        if (st == GntSt.okay)
        {
            Memory.FrameSpan(srcMfn).Slice(op.Source.Offset, op.Len).CopyTo(Memory.FrameSpan(dstMfn).Slice(op.Dest.Offset, op.Len));
            ReleaseCopyOperand(dstDom, op.Dest, dstGref, write: true, dstMfn);
        }
        ReleaseCopyOperand(srcDom, op.Source, srcGref, write: false, srcMfn);
        return st;
    }

    private short AcquireCopyOperand(Domain caller, in GnttabCopyPtr ptr, bool isGref, bool write, out Domain? dom, out MachineFrame mfn)
    {
        dom = null; mfn = default;
        if (!isGref)
        {
            if (ptr.Domain != caller.Id && ptr.Domain.Value != GrantTableConstants.DOMID_SELF) return GntSt.permission_denied;
            if (!caller.P2M.TryGet(new GuestFrame(ptr.RefOrGfn), out mfn, out bool foreign) || foreign) return GntSt.general_error;
            return GntSt.okay;
        }
        var id = ptr.Domain.Value == GrantTableConstants.DOMID_SELF ? caller.Id : ptr.Domain;
        if (!TryGetGranter(id, out var granter)) return GntSt.bad_domain;
        if (ptr.RefOrGfn > uint.MaxValue) return GntSt.bad_gntref;
        short st = granter.GrantTable.Pin(new GrantRef((uint)ptr.RefOrGfn), caller.Id, write, granter.P2M, out mfn);
        if (st == GntSt.okay && granter.IsDying)
        {
            // GT11 as real Xen 4.17 answers a copy with a dying domain's grant: the frame lookup comes first
            // (an unpinned entry fails there: bad_page), then the domain is refused (bad_domain), even for a
            // page that another mapping still holds and a new map would reach.
            UnpinAndNotify(granter, new GrantRef((uint)ptr.RefOrGfn), write);
            mfn = default;
            return GntSt.bad_domain;
        }
        if (st == GntSt.okay) dom = granter;
        return st;
    }

    private void ReleaseCopyOperand(Domain? dom, in GnttabCopyPtr ptr, bool isGref, bool write, MachineFrame mfn)
    {
        _ = mfn;
        if (!isGref || dom is null) return;
        var gref = new GrantRef((uint)ptr.RefOrGfn);
        UnpinAndNotify(dom, gref, write);
    }

    // ---------------------------------------------------------------- memory reservation

    /// <summary>XENMEM_decrease_reservation for one RAM page: the frame goes back to Xen and the GFN is
    /// left empty, ready to receive a grant mapping. False if the GFN holds no RAM.</summary>
    public bool DecreaseReservation(Domain caller, GuestFrame gfn)
    {
        ArgumentNullException.ThrowIfNull(caller);
        if (!caller.P2M.TryRemoveRam(gfn, out var mfn)) return false;
        Memory.Put(mfn);
        return true;
    }

    /// <summary>XENMEM_populate_physmap for one empty GFN: a fresh frame is placed there (for a
    /// direct-mapped domain's RAM GFN, the bank's own frame when it is free). False if the slot is not
    /// empty or memory is exhausted.</summary>
    public bool PopulatePhysmap(Domain caller, GuestFrame gfn)
    {
        ArgumentNullException.ThrowIfNull(caller);
        if (gfn.Value >= (ulong)caller.P2M.Size || caller.P2M.TryGet(gfn, out _, out _)) return false;
        // A direct-mapped domain gets its bank's own frame back when it is still free (Xen maps such a
        // domain's GFN to the same MFN), so balloon cycles keep the bank contiguous; anyone else any frame.
        bool bank = caller.IsDirectMapped && gfn.Value < (ulong)caller.RamPages;
        MachineFrame mfn;
        if (!(bank ? Memory.TryAllocatePreferred(caller.Id, caller.Token, new MachineFrame(caller.DirectMapBase.Value + gfn.Value), out mfn)
                   : Memory.TryAllocate(caller.Id, caller.Token, out mfn))) return false;
        caller.P2M.SetRam(gfn, mfn);
        return true;
    }

    // ---------------------------------------------------------------- isolation

    /// <summary>Every grant through which <paramref name="frame"/> is mapped (or copied) now, over every
    /// domain and zombie: who maps it and whose ref. Empty when no domain reaches it through a grant.</summary>
    public IReadOnlyList<FrameGrantMapping> GrantMappingsOf(MachineFrame frame)
    {
        var list = new List<FrameGrantMapping>();
        if (frame.Value == 0 || frame.Value >= (ulong)Memory.FrameCount || Memory.GrantPinsOf(frame) == 0) return list;
        foreach (var d in DomainsAndZombies()) d.GrantTable.CollectMappings(frame, list);
        return list;
    }

    /// <summary>A guest kernel returns a page to its allocator: a hazard if some domain maps the frame
    /// behind it through a grant (the owner will reuse it while the mapper still reads it).</summary>
    internal void CheckGuestFree(Domain owner, GuestFrame gfn)
    {
        if (!owner.P2M.TryGet(gfn, out var mfn, out bool foreign) || foreign) return;
        if (Memory.GrantPinsOf(mfn) == 0) return;
        Report(IsolationHazardKind.FreedWhileMapped, owner.Id, mfn, gfn);
    }

    /// <summary>A guest kernel took a reference on a page whose count was 0 (a free page, or a tail page of a
    /// block allocated without CMA): always a hazard (Linux frees such a page at the matching put).</summary>
    internal void CheckReferenceOnFreePage(Domain owner, GuestFrame gfn)
    {
        owner.P2M.TryGet(gfn, out var mfn, out _);
        Report(IsolationHazardKind.ReferenceOnFreePage, owner.Id, mfn, gfn);
    }

    private void Report(IsolationHazardKind kind, DomainId owner, MachineFrame frame, GuestFrame? page) =>
        Isolation.Report(new IsolationHazard
        {
            Kind = kind,
            Owner = owner,
            Frame = frame,
            Page = page,
            Mappings = GrantMappingsOf(frame),
            Call = CallChain(),
        });

    /// <summary>The XenShare frames of the current call stack, innermost first, "Type.Method &lt;- ...",
    /// without the monitor's own plumbing (the leading XenHost frames). Small methods may be inlined by
    /// the JIT and then do not appear; the frames that name the operation are marked NoInlining.</summary>
    private static string CallChain()
    {
        var parts = new List<string>();
        bool plumbing = true;
        foreach (var raw in new StackTrace(1, false).ToString().Split('\n'))
        {
            var line = raw.Trim();
            if (!line.StartsWith("at XenShare.", StringComparison.Ordinal)) continue;
            line = line[3..];
            if (plumbing && line.StartsWith("XenShare.Emulation.Hypervisor.XenHost.", StringComparison.Ordinal)) continue;
            plumbing = false;
            int paren = line.IndexOf('(', StringComparison.Ordinal);
            if (paren > 0) line = line[..paren];
            int dot = line.LastIndexOf('.', line.LastIndexOf('.') - 1);
            parts.Add(dot > 0 ? line[(dot + 1)..] : line);
            if (parts.Count == 16) break;
        }
        return parts.Count == 0 ? "(no XenShare frame)" : string.Join(" <- ", parts);
    }

    /// <summary>A snapshot of every domain the host keeps: live ones and zombies.</summary>
    internal List<Domain> DomainsAndZombies()
    {
        lock (_domainLock) return _domains.Values.Concat(_zombies).ToList();
    }

    /// <summary>Hypervisor-level leak findings (<see cref="HypervisorInvariants.CheckLeaks"/>). Empty when clean.</summary>
    public List<string> CheckLeaks() => HypervisorInvariants.CheckLeaks(this);

    /// <summary>Destroys every domain and releases machine memory; reports frames not returned.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var id in _domains.Keys.ToArray()) DestroyDomain(new DomainId(id));
        Memory.Dispose();
    }

    /// <summary>Machine frames allocated now beyond those free at start (0 once every domain is gone).</summary>
    public long FramesInUse => _initialFreeFrames - Memory.FreeFrames;
}
