using System.Numerics;
using System.Runtime.InteropServices;
using XenShare.Emulation.Interop;

namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// The host's machine memory: <see cref="FrameCount"/> 4 KiB frames in one memfd, mapped once as the
/// hypervisor's direct map. Frames carry an owner and a reference count (Xen's page refcount): a frame
/// returns to the free pool when its count drops to zero, and is scrubbed before it is handed to a
/// different domain (Xen scrubs freed pages; doing it at the next allocation, and only across owners,
/// keeps a domain's own decrease/populate reservation cycle - a WC export and its release - cheap, P2).
/// </summary>
/// <remarks>
/// Placement (DM01): single frames (<see cref="TryAllocate(DomainId, out MachineFrame)"/>: grant-table
/// frames, populate_physmap) and contiguous runs (<see cref="TryAllocateContiguous"/>, a direct-mapped
/// domain's bank) are taken first fit from the bottom; a domain's RAM extents are taken from the top down
/// (<see cref="MachinePlacement.Extents"/>), or frame by frame along a scattered walk
/// (<see cref="MachinePlacement.Fragmented"/>). Fault injection is consulted before the lock is taken,
/// once per allocation call (a frame, an extent, a bank).
/// Lock: <c>_allocLock</c> protects the free bitmap, the free count, the first-fit hint and the scattered
/// walk's cursor; it is a leaf (nothing else is taken while holding it, not even the fault injector's).
/// The single-frame allocator's invariant (every bitmap word below the hint is full) only needs the hint
/// lowered when a frame is freed: the other paths only mark frames used. Reference counts and owners are
/// updated with Interlocked operations.
/// Each frame also counts the grant pins on it (<see cref="GrantPinsOf"/>), so the host knows at every
/// moment whether some domain maps it through a grant: a frame freed, scrubbed or handed out while pinned
/// is reported to <see cref="FrameHazard"/> (the isolation monitor), after <c>_allocLock</c> is released.
/// </remarks>
public sealed unsafe class MachineMemory : IDisposable
{
    /// <summary>Page size in bytes.</summary>
    public const int PageSize = Abi.XenPage.Size;

    private readonly object _allocLock = new();
    private readonly ulong[] _used;          // 1 bit per frame, 1 = allocated
    private readonly int[] _refCount;
    private readonly ushort[] _owner;
    private readonly int[] _lastOwnerToken;
    private readonly int[] _grantPins;   // 0 clean, -1 unknown holder, else the domain instance's token
    private readonly int _memFd;
    private byte* _base;
    private long _freeCount;
    private int _hint;
    private readonly int _scatterStride;   // Fragmented placement: the walk's stride, coprime with FrameCount
    private int _scatterCursor = 1;         // Fragmented placement: the walk's next index (under _allocLock)

    /// <summary>Creates machine memory of <paramref name="frameCount"/> frames.</summary>
    public MachineMemory(int frameCount)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(frameCount, 64);
        FrameCount = frameCount;
        _memFd = HostLibc.MemfdCreate("xenshare-machine-memory", HostLibc.MFD_CLOEXEC);
        if (_memFd < 0) throw new InvalidOperationException($"memfd_create failed: errno {Marshal.GetLastPInvokeError()}");
        long bytes = (long)frameCount * PageSize;
        if (HostLibc.Ftruncate(_memFd, bytes) != 0)
        {
            int e = Marshal.GetLastPInvokeError();
            HostLibc.Close(_memFd);
            throw new InvalidOperationException($"ftruncate failed: errno {e}");
        }
        void* p = HostLibc.Mmap(null, (nuint)bytes, HostLibc.PROT_READ | HostLibc.PROT_WRITE, HostLibc.MAP_SHARED | HostLibc.MAP_NORESERVE, _memFd, 0);
        if (HostLibc.MapFailed(p))
        {
            int e = Marshal.GetLastPInvokeError();
            HostLibc.Close(_memFd);
            throw new InvalidOperationException($"mmap of machine memory failed: errno {e}");
        }
        _base = (byte*)p;
        _used = new ulong[(frameCount + 63) / 64];
        _refCount = new int[frameCount];
        _owner = new ushort[frameCount];
        _lastOwnerToken = new int[frameCount];
        _grantPins = new int[frameCount];
        _freeCount = frameCount;
        // Frame 0 is never handed out so that a zero MFN can mean "none" in diagnostics.
        _used[0] = 1;
        _refCount[0] = 1;
        _freeCount--;
        int stride = (int)(frameCount * 0.6180339887) | 1;
        while (Gcd(stride, frameCount) != 1) stride += 2;
        _scatterStride = stride;

        static int Gcd(int a, int b) { while (b != 0) (a, b) = (b, a % b); return a; }
    }

    /// <summary>Fault injection (null: none).</summary>
    internal FaultInjector? Faults { get; init; }

    /// <summary>Called (no lock held) when a frame that a grant pins is freed, scrubbed or allocated: the
    /// isolation monitor's hook. Null: not watched.</summary>
    internal Action<IsolationHazardKind, MachineFrame, DomainId>? FrameHazard { get; set; }

    /// <summary>Grant pins on a frame right now: mappings of it through any grant, and grant copies in
    /// progress (0 = no domain reaches it through a grant).</summary>
    public int GrantPinsOf(MachineFrame frame) { CheckFrame(frame); return Volatile.Read(ref _grantPins[frame.Value]); }

    /// <summary>A grant pin on a frame was taken (Xen's pin of an active grant entry).</summary>
    internal void AddGrantPin(MachineFrame frame) => Interlocked.Increment(ref _grantPins[frame.Value]);

    /// <summary>A grant pin on a frame was dropped.</summary>
    internal void RemoveGrantPin(MachineFrame frame)
    {
        if (Interlocked.Decrement(ref _grantPins[frame.Value]) < 0) throw new InvalidOperationException($"grant pin count of frame {frame} below zero");
    }

    /// <summary>Total frames.</summary>
    public int FrameCount { get; }

    /// <summary>Frames currently free.</summary>
    public long FreeFrames => Interlocked.Read(ref _freeCount);

    /// <summary>The memfd backing machine memory (for mapping frames into emulated processes).</summary>
    internal int MemFd => _memFd;

    /// <summary>Pointer to a frame in the direct map.</summary>
    internal byte* FramePointer(MachineFrame frame)
    {
        CheckFrame(frame);
        return _base + (long)frame.Value * PageSize;
    }

    /// <summary>A span over one frame in the direct map.</summary>
    public Span<byte> FrameSpan(MachineFrame frame) => new(FramePointer(frame), PageSize);

    /// <summary>A span over a run of machine memory (used by DMA engines reading a contiguous segment).</summary>
    public Span<byte> Span(ulong machineAddress, int length)
    {
        if (length < 0 || machineAddress + (ulong)length > (ulong)FrameCount * PageSize || machineAddress < PageSize)
            throw new ArgumentOutOfRangeException(nameof(machineAddress));
        return new Span<byte>(_base + machineAddress, length);
    }

    /// <summary>The owner of an allocated frame.</summary>
    public DomainId OwnerOf(MachineFrame frame) { CheckFrame(frame); return new DomainId(Volatile.Read(ref _owner[frame.Value])); }

    /// <summary>The reference count of a frame (0 = free).</summary>
    public int RefCountOf(MachineFrame frame) { CheckFrame(frame); return Volatile.Read(ref _refCount[frame.Value]); }

    /// <summary>Allocates one frame for <paramref name="owner"/> with reference count 1, or returns false.
    /// The frame is scrubbed unless it is clean.</summary>
    public bool TryAllocate(DomainId owner, out MachineFrame frame) => TryAllocate(owner, 0, out frame);

    /// <summary>Allocates one frame for the domain instance <paramref name="ownerToken"/> (unique per domain
    /// ever created; 0 = unknown). The frame is scrubbed unless it is clean or last held data of that same
    /// domain instance.</summary>
    internal bool TryAllocate(DomainId owner, int ownerToken, out MachineFrame frame)
    {
        if (!TryAllocateUnscrubbed(owner, out frame)) return false;
        if (Volatile.Read(ref _grantPins[frame.Value]) != 0) FrameHazard?.Invoke(IsolationHazardKind.ReassignedWhileMapped, frame, owner);
        ScrubFor(frame, ownerToken);
        return true;
    }

    private bool TryAllocateUnscrubbed(DomainId owner, out MachineFrame frame)
    {
        frame = default;
        if (Faults?.ShouldFail(FaultPoint.MachineFrame) == true) return false;
        lock (_allocLock)
        {
            // Invariant: every word below _hint is full, so the scan starts there and never wraps.
            int words = _used.Length;
            for (int w = _hint; w < words; w++)
            {
                ulong free = ~_used[w];
                if (free == 0) continue;
                int bit = BitOperations.TrailingZeroCount(free);
                long f = (long)w * 64 + bit;
                if (f >= FrameCount) continue;
                _used[w] |= 1UL << bit;
                _hint = w;
                _freeCount--;
                frame = new MachineFrame((ulong)f);
                Claim(frame, owner);
                return true;
            }
        }
        frame = default;
        return false;
    }

    /// <summary>Allocates <paramref name="count"/> physically contiguous frames (first fit), each with
    /// reference count 1, or returns false.</summary>
    public bool TryAllocateContiguous(DomainId owner, int count, out MachineFrame first) =>
        TryAllocateFirstFit(owner, 0, count, FaultPoint.MachineContiguous, out first);

    /// <summary>The RAM bank of a direct-mapped domain (DM01): <paramref name="count"/> machine-contiguous
    /// frames, first fit from the bottom of memory (the top stays for other domains' extents), each with
    /// reference count 1 and scrubbed unless clean or last held by the same domain instance. One hit of
    /// <see cref="FaultPoint.MachineFrame"/>. False when no such run is free.</summary>
    internal bool TryAllocateBank(DomainId owner, int ownerToken, int count, out MachineFrame first) =>
        TryAllocateFirstFit(owner, ownerToken, count, FaultPoint.MachineFrame, out first);

    /// <summary>A first-fit run of <paramref name="count"/> frames from the bottom, claimed and scrubbed.</summary>
    private bool TryAllocateFirstFit(DomainId owner, int ownerToken, int count, FaultPoint fault, out MachineFrame first)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        first = default;
        if (Faults?.ShouldFail(fault) == true) return false;
        int start;
        lock (_allocLock)
        {
            start = FindFirstFitRun(count);
            if (start < 0) return false;
            ClaimRunLocked(start, count, owner);
        }
        first = new MachineFrame((ulong)start);
        ScrubRun(start, count, owner, ownerToken);
        return true;
    }

    /// <summary>One RAM extent of a domain placed with <see cref="MachinePlacement.Extents"/> (DM01): an
    /// aligned run of 2^order frames, where order is the largest not above <paramref name="maxOrder"/> of
    /// which an aligned free run exists. Of those runs it takes the highest that ends at or below
    /// <paramref name="below"/> (the previous extent's first frame, or <see cref="FrameCount"/> for the
    /// first), so a domain's extents go downward; failing that the highest anywhere that does not start at
    /// <paramref name="avoidStart"/> (just above the previous extent, which would make the boundary
    /// machine-consecutive); failing that that one. Each frame gets reference count 1 and is scrubbed
    /// unless clean or last held by the same domain instance. One hit of <see cref="FaultPoint.MachineFrame"/>
    /// per extent, as Xen allocates an extent in one call. False when memory is exhausted.</summary>
    internal bool TryAllocateExtent(DomainId owner, int ownerToken, int maxOrder, int below, int avoidStart, out MachineFrame first, out int frames)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(maxOrder);
        first = default;
        frames = 0;
        if (Faults?.ShouldFail(FaultPoint.MachineFrame) == true) return false;
        int start = -1, order = Math.Min(maxOrder, 30);
        lock (_allocLock)
        {
            for (; order >= 0; order--)
            {
                start = FindAlignedFreeBlockTopDown(order, below, -1);
                if (start < 0) start = FindAlignedFreeBlockTopDown(order, FrameCount, avoidStart);
                if (start < 0 && avoidStart > 0 && avoidStart + (1L << order) <= FrameCount && avoidStart % (1 << order) == 0 && IsFreeRun(avoidStart, 1 << order))
                    start = avoidStart;
                if (start >= 0) break;
            }
            if (start < 0) return false;
            ClaimRunLocked(start, 1 << order, owner);
        }
        first = new MachineFrame((ulong)start);
        frames = 1 << order;
        ScrubRun(start, frames, owner, ownerToken);
        return true;
    }

    /// <summary>One RAM page of a domain placed with <see cref="MachinePlacement.Fragmented"/> (DM01): a
    /// single frame along a deterministic scattered walk of machine memory (frame i*stride mod
    /// <see cref="FrameCount"/> for a host-wide i, the stride coprime with the frame count and near
    /// 0.618 of it), never adjacent to <paramref name="previous"/> (the frame of the guest frame before;
    /// default for none). When the walk meets only used frames for a while (memory nearly full) the lowest
    /// free frame not adjacent to <paramref name="previous"/> is taken, and when the only free frames left
    /// are adjacent to it, one of those. One hit of <see cref="FaultPoint.MachineFrame"/>. Scrubbed as
    /// <see cref="TryAllocate(DomainId, out MachineFrame)"/>. False when memory is exhausted.</summary>
    internal bool TryAllocateScattered(DomainId owner, int ownerToken, MachineFrame previous, out MachineFrame frame)
    {
        frame = default;
        if (Faults?.ShouldFail(FaultPoint.MachineFrame) == true) return false;
        long prev = previous.Value == 0 ? -2 : (long)previous.Value;
        int f = -1;
        lock (_allocLock)
        {
            if (_freeCount == 0) return false;
            for (int step = 0; step < ScatterWalkLimit && f < 0; step++)
            {
                int candidate = (int)((long)_scatterCursor * _scatterStride % FrameCount);
                _scatterCursor = (_scatterCursor + 1) % FrameCount;
                if (!IsUsed(candidate) && Math.Abs(candidate - prev) != 1) f = candidate;
            }
            if (f < 0) f = LowestFreeFrame(prev);
            if (f < 0) return false;
            ClaimRunLocked(f, 1, owner);
        }
        frame = new MachineFrame((ulong)f);
        ScrubRun(f, 1, owner, ownerToken);
        return true;
    }

    /// <summary>One frame for a domain, <paramref name="preferred"/> when it is free (a direct-mapped
    /// domain repopulating a GFN of its bank gets the bank's own frame back), else the lowest free frame.
    /// One hit of <see cref="FaultPoint.MachineFrame"/>; scrubbed as <see cref="TryAllocate(DomainId, out MachineFrame)"/>.</summary>
    internal bool TryAllocatePreferred(DomainId owner, int ownerToken, MachineFrame preferred, out MachineFrame frame)
    {
        int p = preferred.Value > 0 && preferred.Value < (ulong)FrameCount ? (int)preferred.Value : -1;
        if (p < 0) return TryAllocate(owner, ownerToken, out frame);
        frame = default;
        if (Faults?.ShouldFail(FaultPoint.MachineFrame) == true) return false;
        int f;
        lock (_allocLock)
        {
            f = IsUsed(p) ? LowestFreeFrame(-2) : p;
            if (f < 0) return false;
            ClaimRunLocked(f, 1, owner);
        }
        frame = new MachineFrame((ulong)f);
        ScrubRun(f, 1, owner, ownerToken);
        return true;
    }

    // ---------------------------------------------------------------- placement helpers (under _allocLock)

    private const int ScatterWalkLimit = 256;

    private bool IsUsed(int f) => (_used[f >> 6] & (1UL << (f & 63))) != 0;

    private bool IsFreeRun(int start, int count)
    {
        for (int f = start; f < start + count; f++) if (IsUsed(f)) return false;
        return true;
    }

    /// <summary>Marks a free run used, counts it and gives every frame its owner and count 1. Marking
    /// frames used never breaks the single-frame allocator's invariant (every word below <c>_hint</c> is
    /// full), so <c>_hint</c> is left alone.</summary>
    private void ClaimRunLocked(int start, int count, DomainId owner)
    {
        for (int f = start; f < start + count; f++) _used[f >> 6] |= 1UL << (f & 63);
        _freeCount -= count;
        for (int f = start; f < start + count; f++) Claim(new MachineFrame((ulong)f), owner);
    }

    /// <summary>After <c>_allocLock</c>: reports frames handed out while a grant pins them, and scrubs.</summary>
    private void ScrubRun(int start, int count, DomainId owner, int ownerToken)
    {
        for (int i = 0; i < count; i++)
        {
            var f = new MachineFrame((ulong)(start + i));
            if (Volatile.Read(ref _grantPins[f.Value]) != 0) FrameHazard?.Invoke(IsolationHazardKind.ReassignedWhileMapped, f, owner);
            ScrubFor(f, ownerToken);
        }
    }

    /// <summary>The first run of <paramref name="count"/> free frames (lowest address), or -1.</summary>
    private int FindFirstFitRun(int count)
    {
        int run = 0;
        for (int f = _hint * 64; f < FrameCount; f++)
        {
            if ((f & 63) == 0 && _used[f >> 6] == ulong.MaxValue) { run = 0; f += 63; continue; }
            if (IsUsed(f)) { run = 0; continue; }
            if (++run == count) return f - count + 1;
        }
        return -1;
    }

    /// <summary>The highest 2^order aligned run of free frames that ends at or below
    /// <paramref name="limit"/> and does not start at <paramref name="avoid"/>, or -1.</summary>
    private int FindAlignedFreeBlockTopDown(int order, int limit, int avoid)
    {
        int size = 1 << order;
        int top = Math.Min(limit, FrameCount);
        if (top < size) return -1;
        if (order >= 6)
        {
            int wordsPer = size >> 6;
            for (int s = (top - size) / size * size; s >= 0; s -= size)
            {
                if (s == avoid) continue;
                int w0 = s >> 6;
                bool free = true;
                for (int w = w0; w < w0 + wordsPer && free; w++) free = _used[w] == 0;
                if (free) return s;
            }
            return -1;
        }
        ulong aligned = AlignedBits[order];
        for (int w = (top - 1) >> 6; w >= 0; w--)
        {
            ulong m = ~_used[w];
            int inWord = top - w * 64;
            if (inWord < 64) m &= (1UL << inWord) - 1;
            for (int sh = 1; sh < size && m != 0; sh <<= 1) m &= m >> sh;
            m &= aligned;
            while (m != 0)
            {
                int bit = 63 - BitOperations.LeadingZeroCount(m);
                int s = w * 64 + bit;
                if (s != avoid) return s;
                m &= ~(1UL << bit);
            }
        }
        return -1;
    }

    /// <summary>Bit i set where i is a multiple of 2^order (orders 0..5).</summary>
    private static readonly ulong[] AlignedBits =
        [ulong.MaxValue, 0x5555555555555555UL, 0x1111111111111111UL, 0x0101010101010101UL, 0x0001000100010001UL, 0x0000000100000001UL];

    /// <summary>The lowest free frame not adjacent to <paramref name="previous"/>, else the lowest free
    /// frame, or -1 when none is free.</summary>
    private int LowestFreeFrame(long previous)
    {
        int fallback = -1;
        for (int w = _hint; w < _used.Length; w++)
        {
            ulong free = ~_used[w];
            while (free != 0)
            {
                int bit = BitOperations.TrailingZeroCount(free);
                int f = w * 64 + bit;
                if (f >= FrameCount) return fallback;
                if (Math.Abs(f - previous) != 1) return f;
                if (fallback < 0) fallback = f;
                free &= free - 1;
            }
        }
        return fallback;
    }

    /// <summary>Scrubs a freshly claimed frame unless it is clean or last held data of the same domain
    /// instance, and records the new holder. Only the allocating thread touches the frame here.</summary>
    private void ScrubFor(MachineFrame frame, int ownerToken)
    {
        ref int last = ref _lastOwnerToken[frame.Value];
        if (last != 0 && (ownerToken == 0 || last != ownerToken))
        {
            if (Volatile.Read(ref _grantPins[frame.Value]) != 0) FrameHazard?.Invoke(IsolationHazardKind.ScrubbedWhileMapped, frame, OwnerOf(frame));
            new Span<byte>(_base + (long)frame.Value * PageSize, PageSize).Clear();
        }
        last = ownerToken == 0 ? -1 : ownerToken;
    }

    private void Claim(MachineFrame frame, DomainId owner)
    {
        Volatile.Write(ref _owner[frame.Value], owner.Value);
        Volatile.Write(ref _refCount[frame.Value], 1);
    }

    /// <summary>Takes an extra reference on an allocated frame (a foreign mapping, a pinned page).</summary>
    public void Get(MachineFrame frame)
    {
        CheckFrame(frame);
        int after = Interlocked.Increment(ref _refCount[frame.Value]);
        if (after <= 1) throw new InvalidOperationException($"get of free frame {frame}");
    }

    /// <summary>Drops a reference; the frame is freed when the count reaches zero (and scrubbed when it is
    /// next allocated to another domain). Returns true when this call freed it.</summary>
    public bool Put(MachineFrame frame)
    {
        CheckFrame(frame);
        int after = Interlocked.Decrement(ref _refCount[frame.Value]);
        if (after < 0) throw new InvalidOperationException($"put of free frame {frame}");
        if (after > 0) return false;
        if (Volatile.Read(ref _grantPins[frame.Value]) != 0) FrameHazard?.Invoke(IsolationHazardKind.FreedWhileMapped, frame, OwnerOf(frame));
        lock (_allocLock)
        {
            int f = (int)frame.Value;
            _used[f >> 6] &= ~(1UL << (f & 63));
            _freeCount++;
            if ((f >> 6) < _hint) _hint = f >> 6;
        }
        return true;
    }

    private void CheckFrame(MachineFrame frame)
    {
        if (frame.Value == 0 || frame.Value >= (ulong)FrameCount) throw new ArgumentOutOfRangeException(nameof(frame), $"no machine frame {frame}");
    }

    /// <summary>Unmaps and closes machine memory.</summary>
    public void Dispose()
    {
        if (_base == null) return;
        HostLibc.Munmap(_base, (nuint)((long)FrameCount * PageSize));
        HostLibc.Close(_memFd);
        _base = null;
    }
}
