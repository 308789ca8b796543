namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// A mapping domain's maptrack table (GT04): one handle per live grant mapping, allocated in frames of
/// <see cref="HandlesPerFrame"/> up to a maximum (default 1024 frames x 256 = 262 144).
/// </summary>
/// <remarks>Lock: <c>_lock</c> guards the handle array and the free list; a leaf lock (the grant-table
/// lock of the granter is never taken while holding it).</remarks>
internal sealed class MapTrack
{
    /// <summary>Handles per maptrack frame.</summary>
    public const int HandlesPerFrame = 256;

    internal struct Entry
    {
        public Domain? Granter;     // null = free
        public ulong Mfn;
        public ulong HostAddr;
        public uint Ref;            // also the next-free link while free
        public uint Flags;
    }

    private readonly object _lock = new();
    private Entry[] _entries = Array.Empty<Entry>();
    private int _freeHead = -1;
    private int _inUse;

    internal MapTrack(int maxFrames) => MaxHandles = maxFrames * HandlesPerFrame;

    public int MaxHandles { get; }

    public int InUse => Volatile.Read(ref _inUse);

    /// <summary>Allocates a handle, or -1 when the table is exhausted.</summary>
    public int Allocate()
    {
        lock (_lock)
        {
            if (_freeHead < 0 && !Grow()) return -1;
            int h = _freeHead;
            _freeHead = (int)_entries[h].Ref;
            _entries[h].Ref = 0;
            _inUse++;
            return h;
        }
    }

    private bool Grow()
    {
        int have = _entries.Length;
        if (have >= MaxHandles) return false;
        int grown = Math.Min(MaxHandles, Math.Max(HandlesPerFrame, have * 2));
        var next = new Entry[grown];
        _entries.AsSpan().CopyTo(next);
        for (int i = grown - 1; i >= have; i--) { next[i].Ref = (uint)_freeHead; _freeHead = i; }
        _entries = next;
        return true;
    }

    public void Set(int handle, in Entry e)
    {
        lock (_lock) _entries[handle] = e;
    }

    /// <summary>Takes a live entry out (unmap): returns false for an unknown or free handle (GT08).
    /// The check and the removal are one step so a handle is unmapped at most once.</summary>
    public bool TryTake(int handle, ulong hostAddr, ulong devBusAddr, out Entry e, out short status)
    {
        lock (_lock)
        {
            e = default;
            if (handle < 0 || handle >= _entries.Length || _entries[handle].Granter is null) { status = Abi.GntSt.bad_handle; return false; }
            e = _entries[handle];
            if (devBusAddr != 0 && devBusAddr != (e.Mfn << 12)) { status = Abi.GntSt.bad_dev_addr; return false; }
            if (hostAddr != 0 && hostAddr != e.HostAddr) { status = Abi.GntSt.bad_virt_addr; return false; }
            Release(handle);
            status = Abi.GntSt.okay;
            return true;
        }
    }

    /// <summary>Returns a handle allocated by <see cref="Allocate"/> that was never filled.</summary>
    public void Free(int handle)
    {
        lock (_lock) Release(handle);
    }

    private void Release(int handle)
    {
        _entries[handle] = default;
        _entries[handle].Ref = (uint)_freeHead;
        _freeHead = handle;
        _inUse--;
    }

    /// <summary>Snapshot of the live handles (domain teardown).</summary>
    public List<int> LiveHandles()
    {
        var list = new List<int>();
        lock (_lock)
            for (int i = 0; i < _entries.Length; i++) if (_entries[i].Granter is not null) list.Add(i);
        return list;
    }
}
