using XenShare.Abi;

namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// A domain's v1 grant table (GT01-GT03): 8-byte entries <c>{u16 flags, u16 domid, u32 frame}</c> living
/// in machine frames shared with the guest, 512 per frame, starting at one frame and growing on request
/// up to <see cref="MaxFrames"/>. Xen's side keeps an active entry per ref with its pin counts (GT07).
/// </summary>
/// <remarks>
/// Lock: <c>_lock</c> guards the active entries and growth. Entries themselves are guest memory: the
/// guest writes them without a lock, Xen updates their flags with compare-and-swap under <c>_lock</c>,
/// so a guest's end-access and Xen's pin can never both succeed (GT10). Taken after nothing else of the
/// hypervisor except the maptrack lock of another domain is never held at the same time.
/// </remarks>
public sealed unsafe class GrantTable
{
    private struct ActiveEntry
    {
        public int Pins;
        public int WritePins;
        public ulong Mfn;
    }

    private readonly object _lock = new();
    private readonly MachineMemory _memory;
    private readonly DomainId _owner;
    private readonly int _ownerToken;
    private readonly MachineFrame[] _frames;
    private ActiveEntry[] _active;
    private volatile int _nrFrames;
    private int _activePins;

    internal GrantTable(MachineMemory memory, DomainId owner, int maxFrames, int ownerToken = 0)
    {
        _ownerToken = ownerToken;
        _memory = memory;
        _owner = owner;
        MaxFrames = maxFrames;
        _frames = new MachineFrame[maxFrames];
        _active = Array.Empty<ActiveEntry>();
        if (!TryGrow(1)) throw new InvalidOperationException("no machine memory for the first grant frame");
    }

    /// <summary>The host's fault injection (also used by the guest's grant-ref allocator).</summary>
    internal FaultInjector? Faults => _memory.Faults;

    /// <summary>Current number of grant frames.</summary>
    public int NrFrames => _nrFrames;

    /// <summary>max_grant_frames of this domain.</summary>
    public int MaxFrames { get; }

    /// <summary>Current number of entries.</summary>
    public uint EntryCount => (uint)_nrFrames * GrantTableConstants.EntriesPerFrame;

    /// <summary>Total pins held on this table's entries (0 when nobody maps anything).</summary>
    public int ActivePins => Volatile.Read(ref _activePins);

    /// <summary>Grows the table to <paramref name="nrFrames"/> frames (GNTTABOP_setup_table); false when
    /// that would exceed <see cref="MaxFrames"/> or memory is exhausted.</summary>
    public bool TryGrow(int nrFrames)
    {
        lock (_lock)
        {
            if (nrFrames <= _nrFrames) return true;
            if (nrFrames > MaxFrames || Faults?.ShouldFail(FaultPoint.GrantTableGrow) == true) return false;
            int have = _nrFrames;
            for (int i = have; i < nrFrames; i++)
            {
                if (!_memory.TryAllocate(_owner, _ownerToken, out var f))
                {
                    for (int j = have; j < i; j++) _memory.Put(_frames[j]);
                    return false;
                }
                _memory.FrameSpan(f).Clear();
                _frames[i] = f;
            }
            var grown = new ActiveEntry[nrFrames * GrantTableConstants.EntriesPerFrame];
            _active.AsSpan().CopyTo(grown);
            _active = grown;
            _nrFrames = nrFrames;
            return true;
        }
    }

    private ulong* EntryPointer(uint gref)
    {
        var frame = _frames[gref / GrantTableConstants.EntriesPerFrame];
        return (ulong*)(_memory.FramePointer(frame) + (gref % GrantTableConstants.EntriesPerFrame) * GrantTableConstants.GrantEntryV1Size);
    }

    /// <summary>Reads an entry as the guest sees it: (flags, domid, frame).</summary>
    public (ushort Flags, ushort DomId, uint Frame) ReadEntry(GrantRef gref)
    {
        if (gref.Value >= EntryCount) throw new ArgumentOutOfRangeException(nameof(gref));
        ulong e = Volatile.Read(ref *EntryPointer(gref.Value));
        return ((ushort)e, (ushort)(e >> 16), (uint)(e >> 32));
    }

    /// <summary>Guest side: fills an entry (gnttab_grant_foreign_access_ref). The frame and domid are
    /// written together with the flags in one 64-bit store, so Xen never sees a half-written entry.</summary>
    public void WriteEntry(GrantRef gref, ushort flags, DomainId domid, uint frame)
    {
        if (gref.Value >= EntryCount) throw new ArgumentOutOfRangeException(nameof(gref));
        Volatile.Write(ref *EntryPointer(gref.Value), flags | ((ulong)domid.Value << 16) | ((ulong)frame << 32));
    }

    /// <summary>Guest side: ends access (clears the entry) only if Xen has neither GTF_reading nor
    /// GTF_writing set (GT10). Returns false while mapped.</summary>
    public bool TryEndAccess(GrantRef gref)
    {
        if (gref.Value >= EntryCount) throw new ArgumentOutOfRangeException(nameof(gref));
        ref ulong slot = ref *EntryPointer(gref.Value);
        while (true)
        {
            ulong e = Volatile.Read(ref slot);
            if ((e & (Gtf.reading | Gtf.writing)) != 0) return false;
            if (Interlocked.CompareExchange(ref slot, 0, e) == e) return true;
        }
    }

    /// <summary>The lock guarding active entries; batch hypercalls hold it across a run of ops on this
    /// table and call the <c>Locked</c> variants.</summary>
    internal object SyncRoot => _lock;

    /// <summary>Xen side: pins an entry for <paramref name="mapper"/> (GT06 checks from "ref out of range"
    /// on). On success sets GTF_reading (and GTF_writing for a writable pin), takes a reference on the
    /// frame and returns it.</summary>
    internal short Pin(GrantRef gref, DomainId mapper, bool write, P2M p2m, out MachineFrame mfn)
    {
        lock (_lock) return PinLocked(gref, mapper, write, p2m, out mfn);
    }

    /// <summary><see cref="Pin"/> with <see cref="SyncRoot"/> already held.</summary>
    internal short PinLocked(GrantRef gref, DomainId mapper, bool write, P2M p2m, out MachineFrame mfn)
    {
        mfn = default;
        if (_freed) return GntSt.bad_domain;   // the domain was reaped after the caller found it (GT11)
        if (gref.Value >= EntryCount) return GntSt.bad_gntref;
        ref ulong slot = ref *EntryPointer(gref.Value);
        ref ActiveEntry act = ref _active[gref.Value];
        while (true)
        {
            ulong e = Volatile.Read(ref slot);
            ushort flags = (ushort)e;
            if ((flags & Gtf.type_mask) != Gtf.permit_access || (ushort)(e >> 16) != mapper.Value) return GntSt.general_error;
            if (write && (flags & Gtf.@readonly) != 0) return GntSt.general_error;
            ulong frameMfn = act.Mfn;
            if (act.Pins == 0)
            {
                // First pin: the frame must be RAM owned by the granter. As Xen's get_paged_frame: an
                // empty GFN is GNTST_bad_page; a grant mapping at that GFN is GNTST_bad_page unless the
                // page behind it is the granter's own (Arm's get_page(page, granter) succeeds: real Xen
                // 4.17 lets dom0 grant a self-granted page it maps, as the realxen conformance run shows);
                // a page of another owner is GNTST_general_error.
                if (!p2m.TryGet(new GuestFrame(e >> 32), out var m, out bool foreign)) return GntSt.bad_page;
                if (foreign && _memory.OwnerOf(m) != _owner) return GntSt.bad_page;
                if (_memory.OwnerOf(m) != _owner) return GntSt.general_error;
                frameMfn = m.Value;
            }
            ulong want = e | Gtf.reading | (write ? Gtf.writing : 0u);
            if (want != e && Interlocked.CompareExchange(ref slot, want, e) != e) continue; // guest raced us
            act.Mfn = frameMfn;
            act.Pins++;
            if (write) act.WritePins++;
            _activePins++;
            mfn = new MachineFrame(frameMfn);
            _memory.Get(mfn);
            _memory.AddGrantPin(mfn);
            return GntSt.okay;
        }
    }

    /// <summary>Xen side: drops a pin taken by <see cref="Pin"/>; clears GTF_writing / GTF_reading when
    /// the last writer / pin goes, and drops the frame reference. Returns true when the entry is now
    /// completely unpinned.</summary>
    internal bool Unpin(GrantRef gref, bool write)
    {
        MachineFrame mfn;
        bool last;
        lock (_lock) last = UnpinLocked(gref, write, out mfn);
        _memory.Put(mfn);
        return last;
    }

    /// <summary><see cref="Unpin"/> with <see cref="SyncRoot"/> held; the caller puts <paramref name="mfn"/>
    /// after releasing the lock.</summary>
    internal bool UnpinLocked(GrantRef gref, bool write, out MachineFrame mfn)
    {
        ref ActiveEntry act = ref _active[gref.Value];
        if (act.Pins <= 0) throw new InvalidOperationException($"unpin of unpinned ref {gref}");
        act.Pins--;
        if (write) act.WritePins--;
        _activePins--;
        mfn = new MachineFrame(act.Mfn);
        _memory.RemoveGrantPin(mfn);
        ushort clear = 0;
        if (act.WritePins == 0) clear |= Gtf.writing;
        if (act.Pins == 0) { clear |= Gtf.reading; act.Mfn = 0; }
        ref ulong slot = ref *EntryPointer(gref.Value);
        while (true)
        {
            ulong e = Volatile.Read(ref slot);
            ulong want = e & ~(ulong)clear;
            if (want == e || Interlocked.CompareExchange(ref slot, want, e) == e) break;
        }
        return act.Pins == 0;
    }

    /// <summary>Adds every pinned entry of this table whose frame is <paramref name="frame"/> to
    /// <paramref name="into"/> (the mapper is the domain the entry names).</summary>
    internal void CollectMappings(MachineFrame frame, List<FrameGrantMapping> into)
    {
        lock (_lock)
        {
            for (uint r = 0; r < (uint)_active.Length; r++)
            {
                ref var act = ref _active[r];
                if (act.Pins <= 0 || act.Mfn != frame.Value) continue;
                ulong e = Volatile.Read(ref *EntryPointer(r));
                into.Add(new FrameGrantMapping(new DomainId((ushort)(e >> 16)), _owner, new GrantRef(r), act.Pins));
            }
        }
    }

    /// <summary>Puts a frame reference dropped by <see cref="UnpinLocked"/>.</summary>
    internal void PutFrame(MachineFrame mfn) => _memory.Put(mfn);

    /// <summary>Entries that are not invalid, outside the reserved refs 0..7 (leak checks).</summary>
    public int CountValidEntries()
    {
        int n = 0;
        uint count = EntryCount;
        for (uint r = GrantTableConstants.NrReservedEntries; r < count; r++)
            if ((Volatile.Read(ref *EntryPointer(r)) & 0xffff) != 0) n++;
        return n;
    }

    /// <summary>Consistency check for tests (call while no hypercall runs): every active entry's pin counts
    /// are non-negative and match its GTF_reading/GTF_writing flags, the pin total matches
    /// <see cref="ActivePins"/>; pins are added to <paramref name="pinsByMfn"/> and the table's own frames to
    /// <paramref name="owned"/>.</summary>
    internal void CheckInvariants(List<string> problems, Dictionary<ulong, int> pinsByMfn, List<(ulong Mfn, string What)> owned)
    {
        lock (_lock)
        {
            for (int i = 0; i < _nrFrames; i++) owned.Add((_frames[i].Value, $"dom{_owner} grant frame {i}"));
            long total = 0;
            for (uint r = 0; r < (uint)_active.Length; r++)
            {
                ref var act = ref _active[r];
                ushort flags = (ushort)Volatile.Read(ref *EntryPointer(r));
                if (act.Pins < 0 || act.WritePins < 0 || act.WritePins > act.Pins)
                    problems.Add($"dom{_owner} ref {r}: pins {act.Pins}, write pins {act.WritePins}");
                if (((flags & Gtf.reading) != 0) != (act.Pins > 0))
                    problems.Add($"dom{_owner} ref {r}: GTF_reading {(flags & Gtf.reading) != 0} with {act.Pins} pin(s)");
                if (((flags & Gtf.writing) != 0) != (act.WritePins > 0))
                    problems.Add($"dom{_owner} ref {r}: GTF_writing {(flags & Gtf.writing) != 0} with {act.WritePins} write pin(s)");
                if (act.Pins > 0) pinsByMfn[act.Mfn] = pinsByMfn.GetValueOrDefault(act.Mfn) + act.Pins;
                total += act.Pins;
            }
            if (total != _activePins) problems.Add($"dom{_owner}: active pins {_activePins} but entries hold {total}");
        }
    }

    /// <summary>Frees the table's frames (domain teardown, once nothing is pinned).</summary>
    private bool _freed;   // under _lock

    internal void Free()
    {
        lock (_lock)
        {
            for (int i = 0; i < _nrFrames; i++) _memory.Put(_frames[i]);
            _nrFrames = 0;
            _active = Array.Empty<ActiveEntry>();
            _freed = true;
        }
    }
}
