using System.Diagnostics;
using System.Runtime.CompilerServices;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Emulation.Kernel;

/// <summary>
/// The guest kernel's grant-reference allocator and access control (Linux grant-table.c's role):
/// hands out refs from 8 up (GT02), grows the table on demand up to max_grant_frames, grants and ends
/// access, and keeps a deferred-reclaim list for refs a peer still maps. A deferred entry holds a
/// reference on the granted page (XSA-396): the page the caller hands over, or, when the caller has none
/// (gntdev-dmabuf's import release), the page named by the entry's frame, looked up and referenced here.
/// The reference is dropped when access finally ends, so the page cannot go back to its allocator, and
/// be reused, while the peer maps it.
/// </summary>
/// <remarks>
/// Lock: <c>_lock</c> guards the free list and the deferred list. It may be taken while a driver's file
/// lock is held, and it takes the domain's grant-table lock inside (growth, end access): driver file &lt;
/// grant references &lt; grant table. Page references are dropped after <c>_lock</c> is released.
/// D06: reclaim is event-driven: the hypervisor's "last pin gone" upcall retries the entry at once,
/// instead of Linux's once-a-second timer.
/// </remarks>
internal sealed class GrantReferences
{
    private sealed class Deferred
    {
        public GuestFrame? Page;   // the page this entry holds a reference on (none: not a page of this kernel)
        public required long Since;
    }

    private readonly object _lock = new();
    private readonly Domain _domain;
    private readonly PageRefs _pages;
    private readonly Stack<uint> _free = new();
    private readonly Dictionary<uint, Deferred> _deferred = new();
    private uint _nextUnused = GrantTableConstants.NrReservedEntries;
    private int _inUse;
    private int _deferredCount;   // mirrors _deferred.Count for a lock-free fast path

    public GrantReferences(Domain domain, PageRefs pages)
    {
        _domain = domain;
        _pages = pages;
    }

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

    /// <summary>gnttab_end_foreign_access(ref, page): ends access and frees the ref now if nobody maps it
    /// (then drops <paramref name="page"/>'s reference at once, returning true); otherwise defers, and the
    /// deferred entry holds a reference on the granted page until the peer's last unmap ends access
    /// (EI09, GA02). With <paramref name="page"/> the caller hands its reference over; without one the page
    /// is the entry's frame, looked up and referenced here (get_page, as Linux since XSA-396). Returns
    /// false when deferred.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]   // names the deferral in the isolation monitor's call chains
    public bool EndAccess(uint gref, GuestFrame? page)
    {
        lock (_lock)
        {
            // Register first, then try: an unpin upcall racing with us finds the entry either way (it waits
            // on _lock, so it sees the page recorded below).
            var d = new Deferred { Since = Stopwatch.GetTimestamp() };
            _deferred[gref] = d;
            // A full fence (Dekker with the hypervisor's unpin CAS + count read): either our end-access
            // sees the entry unpinned, or the unpin upcall sees the deferred entry.
            Interlocked.Exchange(ref _deferredCount, _deferred.Count);
            if (!_domain.GrantTable.TryEndAccess(new GrantRef(gref)))
            {
                if (page is { } given) d.Page = given;
                else
                {
                    // A frame outside this kernel's pages (a buffer without ordinary pages) has no count.
                    var frame = new GuestFrame(_domain.GrantTable.ReadEntry(new GrantRef(gref)).Frame);
                    if (frame.Value < (ulong)_pages.Size)
                    {
                        _pages.Get(frame);
                        d.Page = frame;
                    }
                }
                return false;
            }
            _deferred.Remove(gref);
            Volatile.Write(ref _deferredCount, _deferred.Count);
            _free.Push(gref);
            _inUse--;
        }
        if (page is { } p) _pages.Put(p);
        return true;
    }

    /// <summary>The hypervisor says the last pin of <paramref name="gref"/> is gone.</summary>
    public void OnUnpinned(uint gref)
    {
        if (Volatile.Read(ref _deferredCount) == 0) return;   // the hot path: nothing deferred
        GuestFrame? page;
        lock (_lock)
        {
            if (_deferred.Count == 0 || !_deferred.TryGetValue(gref, out var d)) return;
            if (!_domain.GrantTable.TryEndAccess(new GrantRef(gref))) return;
            _deferred.Remove(gref);
            Volatile.Write(ref _deferredCount, _deferred.Count);
            _free.Push(gref);
            _inUse--;
            page = d.Page;
        }
        if (page is { } held) _pages.Put(held);
    }
}
