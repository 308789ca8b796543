using XenShare.Emulation.Hypervisor;

namespace XenShare.Emulation.Kernel;

/// <summary>
/// The reference count of every guest page of one kernel (struct page's <c>_refcount</c>), over the
/// whole guest-physical range: RAM and the unpopulated range of foreign mappings. It decides when a page
/// goes back to its allocator, exactly where Linux's count decides it:
/// <list type="bullet">
/// <item>an allocation gives the page one reference; <see cref="Free"/> drops it (<c>put_page</c> /
/// <c>__free_page</c>), and the page returns to its allocator when the count reaches zero, so a page
/// someone still references outlives its owner's free;</item>
/// <item>drivers take and drop references with <see cref="Get"/> and <see cref="Put"/>: a deferred grant
/// end holds the granted page (XSA-396), <c>get_user_pages</c> pins a user page during GRANT_COPY;</item>
/// <item>gntdev's unmap waits until no page of a map carries a reference beyond its allocation's
/// (<see cref="WhenIdle"/>, Linux's <c>gnttab_unmap_refs_async</c>), without a thread: the put that
/// drops the last extra reference runs the waiter.</item>
/// </list>
/// A higher-order DMA allocation without CMA (<see cref="KernelOptions.DmaWithoutCma"/>) is one
/// non-compound block whose tail pages have a count of 0; <see cref="Get"/> on a page whose count is 0
/// (such a tail, or a free page) is reported to the host's <see cref="IsolationMonitor"/> as a hazard
/// instead of being accepted silently: on Linux the matching put frees the tail page early ("Bad page
/// state"). The emulator counts the reference and waits for it all the same, so it stays safe.
/// </summary>
/// <remarks>
/// Lock: counts are updated with Interlocked operations and no lock. <c>_watchLock</c> guards the pages
/// that waiters watch; it is a leaf (taken from any layer, nothing else is taken inside it), and waiters
/// run after it is released, on the thread whose put made their last page idle, holding no lock of this
/// type. The fast path of a put reads <c>_watchedPages</c> after its decrement, and a waiter registers by
/// incrementing it before reading the counts (both full fences): either the put sees the waiter, or the
/// waiter sees the put's count.
/// </remarks>
internal sealed class PageRefs
{
    private sealed class Watch(IPageIdleWaiter waiter)
    {
        public readonly IPageIdleWaiter Waiter = waiter;
        public int Busy;
    }

    private readonly GuestKernel _kernel;
    private readonly int[] _count;
    private readonly ulong[] _allocated;         // 1 bit a page: out of its allocator
    private readonly ulong[] _tail;              // 1 bit a page: a tail of a block allocation (base count 0)
    private readonly object _watchLock = new();
    private readonly Dictionary<ulong, Watch> _watched = new();
    private int _watchedPages;                   // _watched.Count, read without the lock by puts

    public PageRefs(GuestKernel kernel, int pages)
    {
        _kernel = kernel;
        _count = new int[pages];
        _tail = new ulong[(pages + 63) / 64];
        _allocated = new ulong[(pages + 63) / 64];
    }

    /// <summary>The number of guest pages covered.</summary>
    public int Size => _count.Length;

    /// <summary>A page's reference count (0 = free, or a tail of a block allocation).</summary>
    public int CountOf(GuestFrame gfn) => Volatile.Read(ref _count[Index(gfn)]);

    /// <summary>Whether a page is a tail page of a block allocation (count 0 while allocated).</summary>
    public bool IsTail(GuestFrame gfn)
    {
        int i = Index(gfn);
        return (Volatile.Read(ref _tail[i >> 6]) & (1UL << (i & 63))) != 0;
    }

    private int BaseOf(int i) => (Volatile.Read(ref _tail[i >> 6]) & (1UL << (i & 63))) != 0 ? 0 : 1;

    /// <summary>Sets (true) or clears a page's allocated bit; returns whether it was set before.</summary>
    private bool SwapAllocated(int i, bool set)
    {
        ulong bit = 1UL << (i & 63);
        ulong before = set ? Interlocked.Or(ref _allocated[i >> 6], bit) : Interlocked.And(ref _allocated[i >> 6], ~bit);
        return (before & bit) != 0;
    }

    private int Index(GuestFrame gfn)
    {
        if (gfn.Value >= (ulong)_count.Length) throw new ArgumentOutOfRangeException(nameof(gfn), $"gfn {gfn} is outside {_kernel.Domain}");
        return (int)gfn.Value;
    }

    /// <summary>A page came out of an allocator: its count is 1 (the allocation's reference).</summary>
    public void Allocated(GuestFrame gfn)
    {
        int i = Index(gfn);
        if (BaseOf(i) == 0 || SwapAllocated(i, true)) throw new InvalidOperationException($"{_kernel.Domain}: gfn {gfn} allocated twice");
        // Added, not set: a stray reference taken while the page was free (reported at its get) stays
        // counted, and its put later leaves the allocation's own reference.
        Interlocked.Increment(ref _count[i]);
    }

    /// <summary>A page came out of an allocator as a tail of a non-compound block (dma_alloc without CMA):
    /// it is allocated with a count of 0; the block's head holds the allocation's reference.</summary>
    public void AllocatedTail(GuestFrame gfn)
    {
        int i = Index(gfn);
        if (SwapAllocated(i, true)) throw new InvalidOperationException($"{_kernel.Domain}: gfn {gfn} allocated twice");
        Interlocked.Or(ref _tail[i >> 6], 1UL << (i & 63));
    }

    /// <summary>get_page: takes a reference. A page whose count is 0 is reported as a hazard (see the
    /// type's summary) and referenced all the same.</summary>
    public void Get(GuestFrame gfn)
    {
        int i = Index(gfn);
        if (Interlocked.Increment(ref _count[i]) == 1)
            _kernel.Host.CheckReferenceOnFreePage(_kernel.Domain, gfn);
    }

    /// <summary>put_page: drops a reference. At zero an allocated page goes back to its allocator (a tail of
    /// a live block stays with its block; a stray reference on a free page, reported at its get, just goes);
    /// at its allocation's count a waiter watching it may run.</summary>
    public void Put(GuestFrame gfn)
    {
        int i = Index(gfn);
        int n = Interlocked.Decrement(ref _count[i]);
        if (n < 0)
        {
            Interlocked.Increment(ref _count[i]);
            throw new InvalidOperationException($"{_kernel.Domain}: put of gfn {gfn} without a reference");
        }
        if (n == 0 && BaseOf(i) == 1 && SwapAllocated(i, false)) _kernel.ReturnToAllocator(gfn);
        if (Volatile.Read(ref _watchedPages) != 0 && n <= BaseOf(i)) OnMaybeIdle(gfn, i);
    }

    /// <summary>The owner frees its page (drops the allocation's reference). A tail page of a block is
    /// released with its block: it goes back at once when nothing references it, else at the last put.</summary>
    public void Free(GuestFrame gfn)
    {
        int i = Index(gfn);
        if (BaseOf(i) == 1) { Put(gfn); return; }
        Interlocked.And(ref _tail[i >> 6], ~(1UL << (i & 63)));
        // From here a put to zero frees it; if no reference is left, nobody will put it: free it now.
        if (Volatile.Read(ref _count[i]) == 0 && SwapAllocated(i, false)) _kernel.ReturnToAllocator(gfn);
    }

    /// <summary>Whether a page carries references beyond its allocation's.</summary>
    public bool HasExtraReferences(GuestFrame gfn)
    {
        int i = Index(gfn);
        return Volatile.Read(ref _count[i]) > BaseOf(i);
    }

    /// <summary>Runs <paramref name="waiter"/> once no page of <paramref name="pages"/> carries an extra
    /// reference. Returns true, without registering, when that is already so (the caller goes on at once);
    /// otherwise registers and returns false, and the put that drops the last extra reference calls
    /// <see cref="IPageIdleWaiter.OnPagesIdle"/> exactly once. A page is watched by one waiter at a time.</summary>
    public bool WhenIdle(ReadOnlySpan<GuestFrame> pages, IPageIdleWaiter waiter)
    {
        bool busy = false;
        foreach (var g in pages)
            if (HasExtraReferences(g)) { busy = true; break; }
        if (!busy) return true;
        lock (_watchLock)
        {
            Interlocked.Increment(ref _watchedPages);   // before reading counts: see the remarks
            var w = new Watch(waiter);
            foreach (var g in pages)
            {
                if (!HasExtraReferences(g)) continue;
                if (!_watched.TryAdd(g.Value, w)) throw new InvalidOperationException($"{_kernel.Domain}: gfn {g} is watched twice");
                w.Busy++;
            }
            Interlocked.Add(ref _watchedPages, w.Busy - 1);
            return w.Busy == 0;
        }
    }

    private void OnMaybeIdle(GuestFrame gfn, int i)
    {
        IPageIdleWaiter? run = null;
        lock (_watchLock)
        {
            if (!_watched.TryGetValue(gfn.Value, out var w) || Volatile.Read(ref _count[i]) > BaseOf(i)) return;
            _watched.Remove(gfn.Value);
            Interlocked.Decrement(ref _watchedPages);
            if (--w.Busy == 0) run = w.Waiter;
        }
        run?.OnPagesIdle();
    }

    /// <summary>Pages watched by a waiter now (leak checks).</summary>
    public int WatchedPages => Volatile.Read(ref _watchedPages);

    /// <summary>Leak findings, for when every page should be back: pages still referenced, pages still
    /// marked as block tails, pages watched by a waiting unmap.</summary>
    public void CheckLeaks(List<string> problems)
    {
        int referenced = 0, tails = 0;
        for (int i = 0; i < _count.Length; i++)
        {
            if (BaseOf(i) == 0) tails++;
            if (Volatile.Read(ref _count[i]) != 0) referenced++;
        }
        if (referenced != 0) problems.Add($"{_kernel.Domain}: {referenced} page(s) still referenced");
        if (tails != 0) problems.Add($"{_kernel.Domain}: {tails} block tail page(s) not freed");
        if (WatchedPages != 0) problems.Add($"{_kernel.Domain}: {WatchedPages} page(s) watched by a waiting unmap");
    }
}
