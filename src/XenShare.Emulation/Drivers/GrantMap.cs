using System.Buffers;
using System.Diagnostics;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>How the pages of a new <see cref="GrantMap"/> are backed.</summary>
internal enum GrantMapBacking
{
    /// <summary>Unpopulated pages (empty GFNs), the ordinary case.</summary>
    Unpopulated,

    /// <summary>One contiguous DMA allocation on the gntdev device whose frames go back to Xen, so the
    /// grants are mapped into the now empty GFNs (an export with WC or COHERENT, EX04).</summary>
    Dma,
}

/// <summary>
/// A gntdev map (struct gntdev_grant_map) and the one owner of its lifecycle: <see cref="Count"/> grants
/// at page index <see cref="Index"/> of one gntdev file, the pages they are mapped into and how those are
/// backed, the maptrack handles while mapped, its users, its place on the file's list and its unmap
/// notification. Every state change is one of the operations below; nothing outside sets its state.
/// </summary>
/// <remarks>
/// Life: <see cref="Create"/> (pages allocated), <see cref="SetGrant"/> for each page, then
/// <see cref="Publish"/> or <see cref="PublishExported"/> (on the file's list, first fit, holding the
/// list's user). <see cref="TryUse"/> takes a user for an mmap, <see cref="MapGrants"/> maps the grants
/// (all or nothing), <see cref="StartUnmap"/> unmaps them early (x86 PV's MMU notifier),
/// <see cref="RemoveFromList"/> / <see cref="Unpublish"/> take it off the list, and the
/// <see cref="Release"/> of the last user unmaps what is still mapped, sends the unmap notification's event
/// and frees the pages (gntdev_put_map).
/// Lock: the file's map-list lock (<see cref="MapIndexSpace.SyncRoot"/>) guards the list and, for every map
/// of the file, the users, in-use, on-list, unmap-pending and notify fields; a caller that looks a map up on
/// the list may hold it while calling an operation (it is re-entered). The handles, the live-grant count
/// and the read-only flag are written only by the single mapper (mmap or export, after
/// <see cref="TryUse"/> or <see cref="PublishExported"/>) or the single unmapper (the one that set the
/// unmap pending, or the last user); hypercalls and page operations are made without the lock.
/// Unmapping is asynchronous as Linux's (gnttab_unmap_refs_async): the grants are unmapped only once none
/// of the pages carries a reference beyond its allocation's (a deferred grant end of an import of this
/// export holds one); until then the map waits without a thread, and the put that drops the last extra
/// reference finishes the unmap, and the map when its last user went meanwhile.
/// </remarks>
internal sealed class GrantMap : IPageIdleWaiter
{
    private readonly GntDevFile _file;
    private readonly MapIndexSpace _list;
    private readonly ushort[] _domIds;
    private readonly uint[] _refs;
    private readonly int[] _handles;
    private readonly GuestFrame[] _pages;
    private readonly bool _dmaBacked;

    // Guarded by _list.SyncRoot.
    private int _users = 1;
    private bool _inUse;
    private bool _onList;
    private bool _unmapPending;
    private uint _notifyAction;
    private long _notifyOffset;
    private uint _notifyPort;

    // Written by the single mapper or unmapper.
    private int _liveGrants;
    private bool _readonly;

    private GrantMap(GntDevFile file, int count, bool dmaBacked)
    {
        _file = file;
        _list = file.Maps;
        _domIds = new ushort[count];
        _refs = new uint[count];
        _handles = new int[count];
        Array.Fill(_handles, -1);
        _pages = new GuestFrame[count];
        _dmaBacked = dmaBacked;
    }

    /// <summary>The first page index of the map in its file (set when published).</summary>
    public int Index { get; private set; }

    /// <summary>Number of grants (and pages).</summary>
    public int Count => _pages.Length;

    /// <summary>The guest pages the grants are mapped into (an mmap's pages, an export's buffer).</summary>
    public GuestFrame[] Pages => _pages;

    private GuestKernel Kernel => _file.Kernel;

    private XenHost Host => _file.Kernel.Host;

    private Domain Domain => _file.Kernel.Domain;

    /// <summary>Creates a map of <paramref name="count"/> grants with its pages (gntdev_alloc_map);
    /// null when the pages run out (nothing is kept then).</summary>
    public static GrantMap? Create(GntDevFile file, int count, GrantMapBacking backing)
    {
        var map = new GrantMap(file, count, backing == GrantMapBacking.Dma);
        return map.AllocBacking() ? map : null;
    }

    /// <summary>Names the grant of page <paramref name="i"/>; before the map is published.</summary>
    public void SetGrant(int i, ushort domid, uint gref)
    {
        Debug.Assert(!_onList && !_inUse, "grants are set before the map is published");
        _domIds[i] = domid;
        _refs[i] = gref;
    }

    /// <summary>Puts the map on its file's list at the first free index range (gntdev_add_map), with the
    /// list's user. Returns <see cref="Index"/>.</summary>
    public int Publish()
    {
        lock (_list.SyncRoot) return PublishLocked();
    }

    /// <summary><see cref="Publish"/> for a dma-buf export: the export holds its own user of the map besides
    /// the list's, and the map is in use at once (reliability fix: UNMAP_GRANT_REF at the export's index
    /// then only drops the list's user instead of freeing a live buffer's backing, a double free at
    /// release, and an mmap of that index is refused instead of mapping the grants a second time and
    /// unmapping the export's on failure). The export maps the grants itself (<see cref="MapGrants"/>).</summary>
    public int PublishExported()
    {
        lock (_list.SyncRoot)
        {
            _users++;
            _inUse = true;
            return PublishLocked();
        }
    }

    private int PublishLocked()
    {
        Index = _list.Add(this);
        _onList = true;
        return Index;
    }

    /// <summary>Takes the map for an mmap of <paramref name="pageCount"/> pages: it must be listed, of
    /// that size, not in use and not DMA-backed (GD02). On success the map is in use (for good: it cannot
    /// be mmapped again) and the mmap holds a user; the caller then maps the grants.</summary>
    public bool TryUse(int pageCount)
    {
        lock (_list.SyncRoot)
        {
            if (!_onList || Count != pageCount || _inUse || _dmaBacked) return false;
            _inUse = true;
            _users++;
            return true;
        }
    }

    /// <summary>Takes the map off its file's list without dropping a user. True when it was on the list
    /// (the caller then owns the list's user).</summary>
    public bool RemoveFromList()
    {
        lock (_list.SyncRoot)
        {
            if (!_onList) return false;
            _list.Remove(this);
            _onList = false;
            return true;
        }
    }

    /// <summary>Takes the map off the list and drops the list's user (UNMAP_GRANT_REF, the file's release,
    /// an export's teardown). False when it was not on the list (nothing dropped).</summary>
    public bool Unpublish()
    {
        if (!RemoveFromList()) return false;
        Release();
        return true;
    }

    /// <summary>IOCTL_GNTDEV_SET_UNMAP_NOTIFY on this map: at the final unmap, zero the byte at
    /// <paramref name="offset"/> into the map and/or send an event on <paramref name="port"/> (GD06).
    /// -ENOENT when the map has left the list, -EINVAL for a clear-byte on a read-only mapping.</summary>
    public int SetUnmapNotify(uint action, uint port, long offset)
    {
        lock (_list.SyncRoot)
        {
            if (!_onList) return -Errno.ENOENT;
            if ((action & GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE) != 0 && _readonly) return -Errno.EINVAL;
            _notifyAction = action;
            _notifyPort = port;
            _notifyOffset = offset;
            return 0;
        }
    }

    /// <summary>Drops one user of the map; the last one unmaps what is mapped, sends the unmap event and
    /// frees the pages (gntdev_put_map) - at once, or, when a page of the map still carries an extra
    /// reference, from the put that drops the last one.</summary>
    public void Release()
    {
        bool unmap;
        lock (_list.SyncRoot)
        {
            if (--_users > 0) return;
            if (_unmapPending) return;   // the waiting unmap finishes the map: it sees no user under this lock
            unmap = ClaimUnmapLocked();
        }
        if (unmap && !UnmapWhenIdle()) return;
        Finish();
    }

    /// <summary>Unmaps the live grants before the last user goes (unmap_grant_pages from x86 PV's MMU
    /// notifier): at once, or once the pages are idle; nothing when an unmap is under way or nothing is
    /// mapped.</summary>
    public void StartUnmap()
    {
        bool unmap;
        lock (_list.SyncRoot) unmap = ClaimUnmapLocked();
        if (unmap) UnmapWhenIdle();
    }

    /// <summary>Maps every grant of the map into its pages in one GNTTABOP_map_grant_ref batch
    /// (gntdev_map_grant_pages). All or nothing: on any failure the grants that did map are unmapped again
    /// and -EINVAL returned (GD02, EX06). The caller is the map's single mapper (<see cref="TryUse"/> or
    /// <see cref="PublishExported"/>).</summary>
    public int MapGrants(uint flags)
    {
        int n = Count;
        GnttabMapGrantRef[]? rented = null;
        Span<GnttabMapGrantRef> ops = n <= 64 ? stackalloc GnttabMapGrantRef[n] : (rented = ArrayPool<GnttabMapGrantRef>.Shared.Rent(n)).AsSpan(0, n);
        try
        {
            for (int i = 0; i < n; i++)
                ops[i] = new GnttabMapGrantRef { HostAddr = XenPage.AddressOf(_pages[i].Value), Flags = flags, Ref = new GrantRef(_refs[i]), Dom = new DomainId(_domIds[i]) };
            Host.MapGrantRefs(Domain, ops);
            bool ok = true;
            for (int i = 0; i < n; i++)
            {
                if (ops[i].Status == GntSt.okay) { _handles[i] = ops[i].Handle; _liveGrants++; }
                else ok = false;
            }
            _readonly = (flags & GntMap.@readonly) != 0;
            if (ok) return 0;
            UnmapNow();   // a fresh mapping: nobody else references its pages
            return -Errno.EINVAL;
        }
        finally
        {
            if (rented is not null) ArrayPool<GnttabMapGrantRef>.Shared.Return(rented);
        }
    }

    /// <summary>Unmaps every live grant of the map in one GNTTABOP_unmap_grant_ref batch, as Linux's
    /// gntdev does (__unmap_grant_pages); the caller owns the handles (the mapper undoing a failed map, or
    /// the unmapper).</summary>
    private void UnmapNow()
    {
        int live = _liveGrants;
        if (live == 0) return;
        GnttabUnmapGrantRef[]? rented = null;
        Span<GnttabUnmapGrantRef> ops = live <= 64 ? stackalloc GnttabUnmapGrantRef[live] : (rented = ArrayPool<GnttabUnmapGrantRef>.Shared.Rent(live)).AsSpan(0, live);
        try
        {
            int n = 0;
            for (int i = 0; i < Count && n < live; i++)
            {
                if (_handles[i] < 0) continue;
                ops[n++] = new GnttabUnmapGrantRef { Handle = _handles[i], HostAddr = XenPage.AddressOf(_pages[i].Value) };
                _handles[i] = -1;
            }
            _liveGrants -= n;
            Host.UnmapGrantRefs(Domain, ops[..n]);
        }
        finally
        {
            if (rented is not null) ArrayPool<GnttabUnmapGrantRef>.Shared.Return(rented);
        }
    }

    /// <summary>Takes the unmap of the live grants for the caller (sets the unmap pending); false when
    /// another unmap is under way or nothing is mapped. Call with the list lock held.</summary>
    private bool ClaimUnmapLocked()
    {
        if (_unmapPending || _liveGrants == 0) return false;
        _unmapPending = true;
        return true;
    }

    /// <summary>Unmaps the live grants (unmap_grant_pages); the caller has claimed the unmap. The notify
    /// byte is zeroed now; the grants are unmapped at once when no page carries an extra reference (then
    /// true), otherwise by the put that drops the last one (<see cref="IPageIdleWaiter.OnPagesIdle"/>;
    /// false).</summary>
    private bool UnmapWhenIdle()
    {
        ClearNotifyByte();
        if (!Kernel.Options.SynchronousGntDevUnmap && !Kernel.Pages.WhenIdle(_pages, this)) return false;
        UnmapNow();
        lock (_list.SyncRoot) _unmapPending = false;
        return true;
    }

    /// <summary>The last extra reference on the pages of a waiting map is gone: unmap, and finish the map
    /// when its last user went while it waited.</summary>
    void IPageIdleWaiter.OnPagesIdle()
    {
        UnmapNow();
        bool finish;
        lock (_list.SyncRoot)
        {
            _unmapPending = false;
            finish = _users == 0;
        }
        if (finish) Finish();
    }

    private void ClearNotifyByte()
    {
        long offset;
        bool clear;
        lock (_list.SyncRoot)
        {
            clear = (_notifyAction & GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE) != 0;
            offset = _notifyOffset;
            _notifyAction &= ~GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE;
        }
        if (!clear || _readonly) return;
        int page = (int)(offset >> XenPage.Shift);
        if (page < Count && _handles[page] >= 0) Kernel.FrameSpan(_pages[page])[(int)(offset & XenPage.Mask)] = 0;
    }

    /// <summary>The map has no user and nothing mapped: the unmap notification's event goes out and the
    /// pages are freed.</summary>
    private void Finish()
    {
        uint action, port;
        lock (_list.SyncRoot)
        {
            action = _notifyAction;
            port = _notifyPort;
            _notifyAction = 0;
        }
        if ((action & GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT) != 0) Host.EventChannels.Send(Domain, port);
        FreeBacking();
    }

    /// <summary>Allocates the pages: unpopulated GFNs, or one contiguous DMA allocation whose frames go
    /// back to Xen so the grants can be mapped into the now empty GFNs (EX04). All or nothing.</summary>
    private bool AllocBacking()
    {
        if (!_dmaBacked) return Kernel.TryAllocUnpopulated(_pages);
        if (!Kernel.TryAllocContiguous(Count, block: true, out var first)) return false;
        for (int i = 0; i < Count; i++)
        {
            var g = new GuestFrame(first.Value + (ulong)i);
            _pages[i] = g;
            Host.DecreaseReservation(Domain, g);
        }
        return true;
    }

    /// <summary>Gives the pages back. A DMA allocation's GFNs are each repopulated with a fresh frame, then
    /// freed; a release path cannot fail: a GFN that cannot be repopulated now (machine memory exhausted)
    /// is kept by the kernel and retried later (reliability fix: this used to throw out of close/munmap).</summary>
    private void FreeBacking()
    {
        if (_dmaBacked) foreach (var g in _pages) Kernel.RepopulateAndFree(g);
        else foreach (var g in _pages) Kernel.FreePage(g);
    }
}
