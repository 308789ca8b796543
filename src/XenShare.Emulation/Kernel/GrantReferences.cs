using System.Diagnostics;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Emulation.Kernel;

/// <summary>
/// The guest kernel's grant-reference allocator and access control (Linux grant-table.c's role):
/// hands out refs from 8 up (GT02), grows the table on demand up to max_grant_frames, grants and ends
/// access, and keeps a deferred-reclaim list for refs a peer still maps.
/// </summary>
/// <remarks>
/// Lock: <c>_lock</c> guards the free list and the deferred list. It may be taken while a driver's file
/// lock is held, and it takes the domain's grant-table lock inside (growth, end access): driver file &lt;
/// grant references &lt; grant table. Reclaim callbacks run after <c>_lock</c> is released.
/// D06: reclaim is event-driven: the hypervisor's "last pin gone" upcall retries the entry at once,
/// instead of Linux's once-a-second timer.
/// </remarks>
internal sealed class GrantReferences
{
    private sealed class Deferred
    {
        public required Action? OnReclaimed;
        public required long Since;
    }

    private readonly object _lock = new();
    private readonly Domain _domain;
    private readonly Stack<uint> _free = new();
    private readonly Dictionary<uint, Deferred> _deferred = new();
    private uint _nextUnused = GrantTableConstants.NrReservedEntries;
    private int _inUse;
    private int _deferredCount;   // mirrors _deferred.Count for a lock-free fast path

    public GrantReferences(Domain domain) => _domain = domain;

    public int InUse { get { lock (_lock) return _inUse; } }

    public int DeferredCount { get { lock (_lock) return _deferred.Count; } }

    /// <summary>Age of the oldest deferred entry, or zero.</summary>
    public TimeSpan OldestDeferredAge
    {
        get
        {
            lock (_lock)
            {
                long oldest = long.MaxValue;
                foreach (var d in _deferred.Values) oldest = Math.Min(oldest, d.Since);
                return oldest == long.MaxValue ? TimeSpan.Zero : Stopwatch.GetElapsedTime(oldest);
            }
        }
    }

    /// <summary>Allocates refs.Length distinct refs (gnttab_alloc_grant_references), growing the table as
    /// needed. All or nothing: -ENOSPC when the table cannot grow past max_grant_frames (EI04).</summary>
    public int Allocate(Span<uint> refs)
    {
        lock (_lock)
        {
            var table = _domain.GrantTable;
            if (table.Faults?.ShouldFail(FaultPoint.GrantRefs) == true) return -Errno.ENOSPC;
            long available = _free.Count + (table.EntryCount - _nextUnused);
            if (available < refs.Length)
            {
                long needEntries = _nextUnused + (refs.Length - _free.Count);
                int needFrames = (int)((needEntries + GrantTableConstants.EntriesPerFrame - 1) / GrantTableConstants.EntriesPerFrame);
                if (needFrames > table.MaxFrames || !table.TryGrow(needFrames)) return -Errno.ENOSPC;
            }
            for (int i = 0; i < refs.Length; i++)
                refs[i] = _free.Count > 0 ? _free.Pop() : _nextUnused++;
            _inUse += refs.Length;
            return 0;
        }
    }

    /// <summary>Returns a ref whose entry is already invalid.</summary>
    public void Free(uint gref)
    {
        lock (_lock)
        {
            _free.Push(gref);
            _inUse--;
        }
    }

    /// <summary>gnttab_grant_foreign_access_ref.</summary>
    public void Grant(uint gref, DomainId domid, GuestFrame gfn, bool readOnly) =>
        _domain.GrantTable.WriteEntry(new GrantRef(gref), (ushort)(Gtf.permit_access | (readOnly ? Gtf.@readonly : 0)), domid, (uint)gfn.Value);

    /// <summary>gnttab_try_end_foreign_access without freeing the ref.</summary>
    public bool TryEndAccess(uint gref) => _domain.GrantTable.TryEndAccess(new GrantRef(gref));

    /// <summary>gnttab_end_foreign_access: ends access and frees the ref now if nobody maps it (then runs
    /// <paramref name="onReclaimed"/> at once, returning true); otherwise keeps the entry - and, through
    /// the callback, the page - until the peer's last unmap (EI09, GA02). Returns false when deferred.</summary>
    public bool EndAccess(uint gref, Action? onReclaimed)
    {
        lock (_lock)
        {
            // Register first, then try: an unpin upcall racing with us finds the entry either way.
            _deferred[gref] = new Deferred { OnReclaimed = onReclaimed, Since = Stopwatch.GetTimestamp() };
            // A full fence (Dekker with the hypervisor's unpin CAS + count read): either our end-access
            // sees the entry unpinned, or the unpin upcall sees the deferred entry.
            Interlocked.Exchange(ref _deferredCount, _deferred.Count);
            if (!_domain.GrantTable.TryEndAccess(new GrantRef(gref))) return false;
            _deferred.Remove(gref);
            Volatile.Write(ref _deferredCount, _deferred.Count);
            _free.Push(gref);
            _inUse--;
        }
        onReclaimed?.Invoke();
        return true;
    }

    /// <summary>The hypervisor says the last pin of <paramref name="gref"/> is gone.</summary>
    public void OnUnpinned(uint gref)
    {
        if (Volatile.Read(ref _deferredCount) == 0) return;   // the hot path: nothing deferred
        Action? done;
        lock (_lock)
        {
            if (_deferred.Count == 0 || !_deferred.TryGetValue(gref, out var d)) return;
            if (!_domain.GrantTable.TryEndAccess(new GrantRef(gref))) return;
            _deferred.Remove(gref);
            Volatile.Write(ref _deferredCount, _deferred.Count);
            _free.Push(gref);
            _inUse--;
            done = d.OnReclaimed;
        }
        done?.Invoke();
    }
}
