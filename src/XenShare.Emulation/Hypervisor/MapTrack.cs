namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// A mapping domain's maptrack table (GT04): one handle per live grant mapping, in frames of
/// <see cref="HandlesPerFrame"/> up to a maximum (default 1024 frames x 256 = 262 144). Frames never move
/// once allocated, so a freshly allocated handle is filled in without a lock.
/// </summary>
/// <remarks>
/// Locks: like Xen's per-vCPU maptrack free lists, the free handles are split over a few shards, each
/// with its own lock; a thread allocates from its home shard (threads numbered as they first come, ThreadShard) and a handle returns
/// to the shard that owns its frame, so threads mapping in parallel (two gntdev files of one domain, P9)
/// do not contend. <c>_growLock</c> serialises adding frames. Both are leaves: no grant-table lock is
/// taken while holding them, and a shard lock is never held with another shard lock.
/// </remarks>
internal sealed class MapTrack
{
    /// <summary>Handles per maptrack frame.</summary>
    public const int HandlesPerFrame = 256;

    private const int ShardCount = 4;

    internal struct Entry
    {
        public Domain? Granter;     // null = free or not yet filled
        public ulong Mfn;
        public ulong HostAddr;
        public uint Ref;
        public uint Flags;
        public int NextFree;
    }

    private sealed class Shard
    {
        public readonly object Lock = new();
        public int FreeHead = -1;
    }

    private readonly object _growLock = new();
    private readonly Entry[][] _frames;
    private readonly byte[] _frameShard;
    private readonly Shard[] _shards;
    private int _nrFrames;
    private int _inUse;

    internal MapTrack(int maxFrames)
    {
        _frames = new Entry[maxFrames][];
        _frameShard = new byte[maxFrames];
        _shards = new Shard[ShardCount];
        for (int i = 0; i < ShardCount; i++) _shards[i] = new Shard();
        MaxHandles = maxFrames * HandlesPerFrame;
    }

    public int MaxHandles { get; }

    /// <summary>Fault injection (null: none).</summary>
    public FaultInjector? Faults { get; set; }

    public int InUse => Volatile.Read(ref _inUse);

    private ref Entry At(int handle) => ref _frames[handle / HandlesPerFrame][handle % HandlesPerFrame];

    private static int HomeShard => ThreadShard.Home(ShardCount);

    private Shard OwnerOf(int handle) => _shards[_frameShard[handle / HandlesPerFrame]];

    /// <summary>Allocates a handle, or -1 when the table is exhausted.</summary>
    public int Allocate()
    {
        if (Faults?.ShouldFail(FaultPoint.MapTrack) == true) return -1;
        int home = HomeShard;
        int h = Pop(_shards[home]);
        if (h < 0 && Grow(home)) h = Pop(_shards[home]);
        for (int i = 1; h < 0 && i < ShardCount; i++) h = Pop(_shards[(home + i) % ShardCount]);   // steal
        if (h >= 0) Interlocked.Increment(ref _inUse);
        return h;
    }

    /// <summary>Allocates up to handles.Length handles; returns how many it got.</summary>
    public int AllocateMany(Span<int> handles)
    {
        for (int i = 0; i < handles.Length; i++)
        {
            int h = Allocate();
            if (h < 0) return i;
            handles[i] = h;
        }
        return handles.Length;
    }

    private int Pop(Shard shard)
    {
        lock (shard.Lock)
        {
            int h = shard.FreeHead;
            if (h >= 0) shard.FreeHead = At(h).NextFree;
            return h;
        }
    }

    /// <summary>Adds a frame whose handles go to shard <paramref name="shard"/>; false at the maximum.</summary>
    private bool Grow(int shard)
    {
        lock (_growLock)
        {
            int n = _nrFrames;
            if (n >= _frames.Length) return false;
            var frame = new Entry[HandlesPerFrame];
            int baseHandle = n * HandlesPerFrame;
            for (int i = 0; i < HandlesPerFrame - 1; i++) frame[i].NextFree = baseHandle + i + 1;
            _frames[n] = frame;
            _frameShard[n] = (byte)shard;
            Volatile.Write(ref _nrFrames, n + 1);
            var s = _shards[shard];
            lock (s.Lock)
            {
                frame[HandlesPerFrame - 1].NextFree = s.FreeHead;
                s.FreeHead = baseHandle;
            }
            return true;
        }
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
    /// the removal are one step under the owning shard's lock, so a handle is unmapped at most once.</summary>
    public bool TryTake(int handle, ulong hostAddr, ulong devBusAddr, out Entry e, out short status)
    {
        e = default;
        if (handle < 0 || handle >= Volatile.Read(ref _nrFrames) * HandlesPerFrame)
        {
            status = Abi.GntSt.bad_handle;
            return false;
        }
        var shard = OwnerOf(handle);
        lock (shard.Lock)
        {
            if (Volatile.Read(ref At(handle).Granter) is null) { status = Abi.GntSt.bad_handle; return false; }
            e = At(handle);
            if (devBusAddr != 0 && devBusAddr != Abi.XenPage.AddressOf(e.Mfn)) { status = Abi.GntSt.bad_dev_addr; return false; }
            if (hostAddr != 0 && hostAddr != e.HostAddr) { status = Abi.GntSt.bad_virt_addr; return false; }
            PushLocked(shard, handle);
        }
        Interlocked.Decrement(ref _inUse);
        status = Abi.GntSt.okay;
        return true;
    }

    /// <summary>Returns a handle allocated by <see cref="Allocate"/> that was never filled.</summary>
    public void Free(int handle)
    {
        var shard = OwnerOf(handle);
        lock (shard.Lock) PushLocked(shard, handle);
        Interlocked.Decrement(ref _inUse);
    }

    /// <summary>Returns several unfilled handles.</summary>
    public void FreeMany(ReadOnlySpan<int> handles)
    {
        foreach (int h in handles) Free(h);
    }

    private void PushLocked(Shard shard, int handle)
    {
        ref var e = ref At(handle);
        e = default;
        e.NextFree = shard.FreeHead;
        shard.FreeHead = handle;
    }

    /// <summary>Snapshot of the live handles (domain teardown; no map runs concurrently).</summary>
    public List<int> LiveHandles()
    {
        var list = new List<int>();
        int n = Volatile.Read(ref _nrFrames) * HandlesPerFrame;
        for (int i = 0; i < n; i++) if (Volatile.Read(ref At(i).Granter) is not null) list.Add(i);
        return list;
    }
}
