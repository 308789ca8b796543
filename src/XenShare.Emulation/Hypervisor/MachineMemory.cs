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
/// Lock: <c>_allocLock</c> protects the free bitmap and the free count; it is a leaf (nothing else is
/// taken while holding it). Reference counts and owners are updated with Interlocked operations.
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
    public bool TryAllocateContiguous(DomainId owner, int count, out MachineFrame first)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        first = default;
        if (Faults?.ShouldFail(FaultPoint.MachineContiguous) == true) return false;
        lock (_allocLock)
        {
            int run = 0;
            for (int f = 1; f < FrameCount; f++)
            {
                if ((_used[f >> 6] & (1UL << (f & 63))) != 0) { run = 0; continue; }
                if (++run < count) continue;
                int start = f - count + 1;
                for (int g = start; g <= f; g++) _used[g >> 6] |= 1UL << (g & 63);
                _freeCount -= count;
                first = new MachineFrame((ulong)start);
                for (int g = start; g <= f; g++) Claim(new MachineFrame((ulong)g), owner);
                break;
            }
        }
        if (first.Value == 0) return false;
        for (int i = 0; i < count; i++)
        {
            var f = new MachineFrame(first.Value + (ulong)i);
            if (Volatile.Read(ref _grantPins[f.Value]) != 0) FrameHazard?.Invoke(IsolationHazardKind.ReassignedWhileMapped, f, owner);
            ScrubFor(f, 0);
        }
        return true;
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
