using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Emulation.Kernel;

/// <summary>Receives events delivered to a port (a bound irq handler).</summary>
internal interface IEventHandler
{
    void OnEvent(EventPort port);
}

/// <summary>
/// The emulated Linux kernel of one domain: processes with fd tables, a page allocator over the
/// domain's RAM, unpopulated pages for foreign mappings, grant references, event-channel dispatch and
/// a table of device files that drivers register. It knows no ioctl numbers: drivers decode them.
/// </summary>
/// <remarks>
/// Lock order inside a kernel: process fd/mm locks &lt; driver file locks &lt; dma-buf locks &lt;
/// <see cref="GrantReferences"/> &lt; hypervisor locks; allocators, <see cref="PageRefs"/> and the poll
/// queue are leaves. Every guest page has a reference count (<see cref="Pages"/>) that decides when it
/// goes back to its allocator.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA1001", Justification = "The halt token's source has no timer and lives as long as the kernel; nothing to free early.")]
public sealed class GuestKernel : IDomainSink
{
    private readonly ConcurrentDictionary<string, Func<GuestProcess, int, object>> _devices = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<uint, IEventHandler> _eventHandlers = new();
    private readonly List<GuestProcess> _processes = new();
    private readonly List<Func<IEnumerable<string>>> _leakChecks = new();
    private readonly List<GuestFrame> _unrepopulated = new();   // DMA-backing GFNs whose repopulation failed
    private int _nextPid = 1;
    private readonly int _initialRamFree;

    /// <summary>Boots a kernel in <paramref name="domain"/>.</summary>
    public GuestKernel(XenHost host, Domain domain, KernelOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(domain);
        Host = host;
        Domain = domain;
        Options = options ?? new KernelOptions();
        Ram = new FrameAllocator(0, domain.RamPages) { Faults = host.Faults, Point = FaultPoint.RamPages };
        Unpopulated = new FrameAllocator((ulong)domain.RamPages, domain.UnpopulatedPages) { Faults = host.Faults, Point = FaultPoint.UnpopulatedPages };
        Pages = new PageRefs(this, domain.RamPages + domain.UnpopulatedPages);
        Grants = new GrantReferences(domain, Pages);
        _initialRamFree = Ram.FreeCount;
        Swiotlb = new Kernel.Dma.Swiotlb(this);
        domain.Sink = this;
    }

    /// <summary>The kernel's Xen swiotlb (DM04): bounce buffers of the devices of a direct-mapped domain.</summary>
    public Kernel.Dma.Swiotlb Swiotlb { get; }

    /// <summary>The hypervisor.</summary>
    public XenHost Host { get; }

    /// <summary>The domain this kernel runs in.</summary>
    public Domain Domain { get; }

    /// <summary>Tunables.</summary>
    public KernelOptions Options { get; }

    internal FrameAllocator Ram { get; }
    internal FrameAllocator Unpopulated { get; }
    internal GrantReferences Grants { get; }

    /// <summary>The reference count of every guest page (struct page's _refcount).</summary>
    internal PageRefs Pages { get; }
    internal PollWaitQueue PollQueue { get; } = new();

    private readonly ConcurrentDictionary<int, int> _releaseWaiters = new();

    /// <summary>Whether the thread with this managed id is inside a blocking EXP_WAIT_RELEASED that found
    /// its export (so tests can tell that a waiter is waiting instead of guessing by time).</summary>
    public bool IsInReleaseWait(int managedThreadId) => _releaseWaiters.ContainsKey(managedThreadId);

    internal void EnterReleaseWait() => _releaseWaiters.AddOrUpdate(Environment.CurrentManagedThreadId, 1, static (_, n) => n + 1);

    internal void LeaveReleaseWait()
    {
        int id = Environment.CurrentManagedThreadId;
        if (_releaseWaiters.AddOrUpdate(id, 0, static (_, n) => n - 1) <= 0) _releaseWaiters.TryRemove(id, out _);
    }

    /// <summary>Grant refs in use by this kernel.</summary>
    public int GrantRefsInUse => Grants.InUse;

    /// <summary>Grant refs whose end of access waits for a peer's unmap (D06: observable).</summary>
    public int DeferredReclaims => Grants.DeferredCount;

    /// <summary>Pages whose gntdev map waits for their extra references to go before it unmaps (D02: an
    /// export whose pages a deferred grant end of an import still references).</summary>
    public int PagesAwaitingUnmap => Pages.WatchedPages;

    /// <summary>Age of the oldest deferred reclaim.</summary>
    public TimeSpan OldestDeferredReclaimAge => Grants.OldestDeferredAge;

    // ------------------------------------------------------------------ halt (the domain is destroyed while running)

    private readonly CancellationTokenSource _halt = new();
    private int _halted;

    /// <summary>Whether the domain was destroyed with this kernel running (<see cref="Halt"/>): its processes'
    /// calls fail with EIO and nothing of the kernel runs any more.</summary>
    public bool IsHalted => Volatile.Read(ref _halted) != 0;

    /// <summary>Cancelled by <see cref="Halt"/>: blocking waits of drivers wake on it and return EIO.</summary>
    internal CancellationToken HaltToken => _halt.Token;

    /// <summary>
    /// The domain is destroyed while this kernel runs (<c>xl destroy</c> of a live guest): Xen pauses its vCPUs,
    /// so nothing of the kernel runs again and nothing is cleaned up by it (no close, no unmap, no end of
    /// access: the hypervisor's domain destruction does what is done). The emulator's threads of the guest's
    /// processes do run on, so instead: new system calls fail with EIO, blocked ones (xenbus and evtchn reads,
    /// poll, EXP_WAIT_RELEASED) wake and fail with EIO, calls already in progress are waited for (the vCPUs
    /// paused: after this returns no call of this kernel reaches the hypervisor), and every process's mappings
    /// are replaced by scratch memory so that a dead process's thread can never touch a machine frame again
    /// (the frames go back to Xen and may be handed to another domain). False if calls still ran after
    /// <paramref name="timeout"/>.
    /// </summary>
    public bool Halt(TimeSpan timeout)
    {
        if (Interlocked.Exchange(ref _halted, 1) != 0) return true;
        _halt.Cancel();
        PollQueue.Wake();
        GuestProcess[] procs;
        lock (_processes) procs = _processes.ToArray();
        bool idle = true;
        foreach (var p in procs) idle &= p.WaitIdle(timeout);
        foreach (var p in procs) p.ScrubMappingsForHalt();
        return idle;
    }

    /// <summary>Starts a process (its fd table starts empty).</summary>
    public GuestProcess StartProcess()
    {
        lock (_processes)
        {
            var p = new GuestProcess(this, _nextPid++);
            _processes.Add(p);
            return p;
        }
    }

    internal void OnProcessExit(GuestProcess p)
    {
        lock (_processes) _processes.Remove(p);
    }

    /// <summary>Registers a device file; <paramref name="open"/> returns a KernelFile or a boxed -errno.</summary>
    internal void RegisterDevice(string path, Func<GuestProcess, int, object> open) => _devices[path] = open;

    internal void RegisterLeakCheck(Func<IEnumerable<string>> check)
    {
        lock (_leakChecks) _leakChecks.Add(check);
    }

    internal int OpenDevice(string path, GuestProcess caller, int flags, out KernelFile? file)
    {
        file = null;
        if (!_devices.TryGetValue(path, out var open)) return -Errno.ENOENT;
        object r = open(caller, flags);
        if (r is int errno) return errno;
        file = (KernelFile)r;
        file.OpenFlags = flags;
        return 0;
    }

    // ------------------------------------------------------------------ pages

    /// <summary>Allocates RAM pages (zeroed when asked), each with one reference; all or nothing.</summary>
    internal bool TryAllocPages(Span<GuestFrame> pages, bool zero)
    {
        if (!Ram.TryAllocate(pages)) return false;
        foreach (var g in pages) Pages.Allocated(g);
        if (zero) foreach (var g in pages) FrameSpan(g).Clear();
        return true;
    }

    /// <summary>Allocates unpopulated pages for foreign mappings (xen_alloc_unpopulated_pages), each with
    /// one reference; all or nothing.</summary>
    internal bool TryAllocUnpopulated(Span<GuestFrame> pages)
    {
        if (!Unpopulated.TryAllocate(pages)) return false;
        foreach (var g in pages) Pages.Allocated(g);
        return true;
    }

    /// <summary>Allocates <paramref name="count"/> physically contiguous RAM pages. <paramref name="block"/>
    /// false: every page has its own reference, as CMA gives them (and the contiguous heap). True: a DMA
    /// allocation as <c>dma_alloc_wc</c>/<c>dma_alloc_coherent</c> makes it, which is one non-compound
    /// block from the page allocator unless the kernel has CMA (<see cref="KernelOptions.DmaWithoutCma"/>):
    /// then only the first page has a reference and the tail pages have a count of 0.</summary>
    internal bool TryAllocContiguous(int count, bool block, out GuestFrame first)
    {
        if (!Ram.TryAllocateContiguous(count, out first)) return false;
        bool tails = block && Options.DmaWithoutCma;
        for (int i = 0; i < count; i++)
        {
            var g = new GuestFrame(first.Value + (ulong)i);
            if (tails && i > 0) Pages.AllocatedTail(g); else Pages.Allocated(g);
        }
        return true;
    }

    /// <summary>The owner frees its page (put of the allocation's reference): the page returns to its
    /// allocator when nobody else references it, else at the last <see cref="PutPage"/>.</summary>
    internal void FreePage(GuestFrame gfn) => Pages.Free(gfn);

    /// <summary>get_page: keeps a page from going back to its allocator (a deferred grant end, a pinned user
    /// page).</summary>
    internal void GetPage(GuestFrame gfn) => Pages.Get(gfn);

    /// <summary>put_page: drops a reference taken with <see cref="GetPage"/>.</summary>
    internal void PutPage(GuestFrame gfn) => Pages.Put(gfn);

    /// <summary>The last reference to a page is gone: it goes back to the allocator of its range. A RAM
    /// page is checked by the isolation monitor first: freeing a frame another domain maps is a hazard.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]   // names the free in the isolation monitor's call chains
    internal void ReturnToAllocator(GuestFrame gfn)
    {
        if (gfn.Value < (ulong)Domain.RamPages)
        {
            Host.CheckGuestFree(Domain, gfn);
            Ram.Free(gfn);
        }
        else Unpopulated.Free(gfn);
    }

    /// <summary>XENMEM_populate_physmap for a RAM GFN that was handed back to Xen (a DMA backing), then
    /// frees it. When machine memory is exhausted the GFN stays empty and allocated, is remembered, and is
    /// retried at the next call and at leak checks (a release path must not fail; Linux would leave a
    /// hole in the physmap).</summary>
    internal void RepopulateAndFree(GuestFrame gfn)
    {
        RetryRepopulate();
        if (Host.PopulatePhysmap(Domain, gfn)) FreePage(gfn);
        else lock (_unrepopulated) _unrepopulated.Add(gfn);
    }

    private void RetryRepopulate()
    {
        List<GuestFrame> done = new();
        lock (_unrepopulated)
        {
            if (_unrepopulated.Count == 0) return;
            _unrepopulated.RemoveAll(g =>
            {
                if (!Host.PopulatePhysmap(Domain, g)) return false;
                done.Add(g);
                return true;
            });
        }
        foreach (var g in done) FreePage(g);
    }

    /// <summary>The machine frame behind a GFN (RAM or a foreign mapping).</summary>
    internal bool TryResolve(GuestFrame gfn, out MachineFrame mfn) => Domain.P2M.TryGet(gfn, out mfn, out _);

    /// <summary>A span over the page behind a GFN.</summary>
    internal Span<byte> FrameSpan(GuestFrame gfn)
    {
        if (!TryResolve(gfn, out var mfn)) throw new InvalidOperationException($"gfn {gfn} of {Domain} is not populated");
        return Host.Memory.FrameSpan(mfn);
    }

    // ------------------------------------------------------------------ events

    internal void BindEventHandler(uint port, IEventHandler handler) => _eventHandlers[port] = handler;

    internal void UnbindEventHandler(uint port) => _eventHandlers.TryRemove(port, out _);

    /// <summary>evtchn_get: is the port bound by a user of this kernel (the evtchn device)?</summary>
    internal bool IsUserPort(uint port) => _eventHandlers.ContainsKey(port);

    void IDomainSink.OnEvent(EventPort port)
    {
        if (_eventHandlers.TryGetValue(port.Value, out var h)) h.OnEvent(port);
    }

    void IDomainSink.OnGrantUnpinned(GrantRef gref) => Grants.OnUnpinned(gref.Value);

    // ------------------------------------------------------------------ checks

    /// <summary>Kernel-level leak findings: live processes with fds or mappings, RAM pages not returned,
    /// unpopulated pages in use, grant refs in use or awaiting reclaim, bound event handlers, and each
    /// driver's own findings. Empty when clean.</summary>
    public List<string> CheckLeaks()
    {
        var problems = new List<string>();
        RetryRepopulate();
        lock (_unrepopulated) if (_unrepopulated.Count != 0) problems.Add($"{Domain}: {_unrepopulated.Count} RAM page(s) waiting for repopulation");
        GuestProcess[] procs;
        lock (_processes) procs = _processes.ToArray();
        foreach (var p in procs)
        {
            if (p.OpenFdCount != 0) problems.Add($"{p.Description}: {p.OpenFdCount} fd(s) open");
            if (p.MappingCount != 0) problems.Add($"{p.Description}: {p.MappingCount} mapping(s) left");
        }
        if (Ram.FreeCount != _initialRamFree) problems.Add($"{Domain}: {_initialRamFree - Ram.FreeCount} RAM page(s) not freed");
        if (Unpopulated.FreeCount != Unpopulated.Count) problems.Add($"{Domain}: {Unpopulated.Count - Unpopulated.FreeCount} unpopulated page(s) in use");
        if (Grants.InUse != 0) problems.Add($"{Domain}: {Grants.InUse} grant ref(s) in use");
        if (Grants.DeferredCount != 0) problems.Add($"{Domain}: {Grants.DeferredCount} deferred reclaim(s) pending");
        Pages.CheckLeaks(problems);
        if (!_eventHandlers.IsEmpty) problems.Add($"{Domain}: {_eventHandlers.Count} event handler(s) bound");
        lock (_leakChecks)
            foreach (var check in _leakChecks) problems.AddRange(check());
        return problems;
    }
}
