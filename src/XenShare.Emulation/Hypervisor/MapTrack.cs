namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// A mapping domain's maptrack table (GT04): one handle per live grant mapping, in frames of
/// <see cref="HandlesPerFrame"/> up to a maximum (default 1024 frames x 256 = 262 144). Frames never move
/// once allocated, so a freshly allocated handle is filled in without the lock.
/// </summary>
/// <remarks>Lock: <c>_lock</c> guards the free list and the take/release of handles; a leaf lock (no
/// grant-table lock is taken while holding it). Batch calls take it once per batch.</remarks>
internal sealed class MapTrack
{
    /// <summary>Handles per maptrack frame.</summary>
    public const int HandlesPerFrame = 256;

    internal struct Entry
    {
        public Domain? Granter;     // null = free or not yet filled
        public ulong Mfn;
        public ulong HostAddr;
        public uint Ref;
        public uint Flags;
        public int NextFree;
    }

    private readonly object _lock = new();
    private readonly Entry[][] _frames;
    private int _nrFrames;
    private int _freeHead = -1;
    private int _inUse;

    internal MapTrack(int maxFrames)
    {
        _frames = new Entry[maxFrames][];
        MaxHandles = maxFrames * HandlesPerFrame;
    }

    public int MaxHandles { get; }

    /// <summary>Fault injection (null: none).</summary>
    public FaultInjector? Faults { get; set; }

    public int InUse => Volatile.Read(ref _inUse);

    private ref Entry At(int handle) => ref _frames[handle / HandlesPerFrame][handle % HandlesPerFrame];

    /// <summary>Allocates a handle, or -1 when the table is exhausted.</summary>
    public int Allocate()
    {
        lock (_lock) return AllocateLocked();
    }

    /// <summary>Allocates up to handles.Length handles under one lock; returns how many it got.</summary>
    public int AllocateMany(Span<int> handles)
    {
        lock (_lock)
        {
            for (int i = 0; i < handles.Length; i++)
            {
                int h = AllocateLocked();
                if (h < 0) return i;
                handles[i] = h;
            }
            return handles.Length;
        }
    }

    private int AllocateLocked()
    {
        if (Faults?.ShouldFail(FaultPoint.MapTrack) == true) return -1;
        if (_freeHead < 0 && !Grow()) return -1;
        int h = _freeHead;
        _freeHead = At(h).NextFree;
        _inUse++;
        return h;
    }

    private bool Grow()
    {
        if (_nrFrames >= _frames.Length) return false;
        var frame = new Entry[HandlesPerFrame];
        int baseHandle = _nrFrames * HandlesPerFrame;
        for (int i = HandlesPerFrame - 1; i >= 0; i--) { frame[i].NextFree = _freeHead; _freeHead = baseHandle + i; }
        _frames[_nrFrames] = frame;
        _nrFrames++;
        return true;
    }

    /// <summary>Fills a handle returned by <see cref="Allocate"/>; the granter is published last.</summary>
    public void Set(int handle, Domain granter, ulong mfn, ulong hostAddr, uint gref, uint flags)
    {
        ref var e = ref At(handle);
        e.Mfn = mfn;
        e.HostAddr = hostAddr;
        e.Ref = gref;
        e.Flags = flags;
        Volatile.Write(ref e.Granter, granter);
    }

    /// <summary>Takes a live entry out (unmap): false for an unknown or free handle (GT08). The check and
    /// the removal are one step, so a handle is unmapped at most once.</summary>
    public bool TryTake(int handle, ulong hostAddr, ulong devBusAddr, out Entry e, out short status)
    {
        lock (_lock) return TryTakeLocked(handle, hostAddr, devBusAddr, out e, out status);
    }

    /// <summary>The lock, for batch unmaps that take several handles in one go.</summary>
    public object SyncRoot => _lock;

    /// <summary><see cref="TryTake"/> with <see cref="SyncRoot"/> held.</summary>
    public bool TryTakeLocked(int handle, ulong hostAddr, ulong devBusAddr, out Entry e, out short status)
    {
        e = default;
        if (handle < 0 || handle >= _nrFrames * HandlesPerFrame || Volatile.Read(ref At(handle).Granter) is null)
        {
            status = Abi.GntSt.bad_handle;
            return false;
        }
        e = At(handle);
        if (devBusAddr != 0 && devBusAddr != (e.Mfn << 12)) { status = Abi.GntSt.bad_dev_addr; return false; }
        if (hostAddr != 0 && hostAddr != e.HostAddr) { status = Abi.GntSt.bad_virt_addr; return false; }
        ReleaseLocked(handle);
        status = Abi.GntSt.okay;
        return true;
    }

    /// <summary>Returns a handle allocated by <see cref="Allocate"/> that was never filled.</summary>
    public void Free(int handle)
    {
        lock (_lock) ReleaseLocked(handle);
    }

    /// <summary>Returns several unfilled handles under one lock.</summary>
    public void FreeMany(ReadOnlySpan<int> handles)
    {
        lock (_lock) foreach (int h in handles) ReleaseLocked(h);
    }

    private void ReleaseLocked(int handle)
    {
        ref var e = ref At(handle);
        e = default;
        e.NextFree = _freeHead;
        _freeHead = handle;
        _inUse--;
    }

    /// <summary>Snapshot of the live handles (domain teardown).</summary>
    public List<int> LiveHandles()
    {
        var list = new List<int>();
        lock (_lock)
            for (int i = 0; i < _nrFrames * HandlesPerFrame; i++) if (At(i).Granter is not null) list.Add(i);
        return list;
    }
}
