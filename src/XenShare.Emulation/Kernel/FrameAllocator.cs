using System.Numerics;

namespace XenShare.Emulation.Kernel;

/// <summary>A bitmap allocator over a range of guest frames [Base, Base + Count): single pages and
/// contiguous runs (first fit). Lock: <c>_lock</c>, a leaf.</summary>
internal sealed class FrameAllocator
{
    private readonly object _lock = new();
    private readonly ulong[] _used;
    private int _free;
    private int _hint;

    public FrameAllocator(ulong baseFrame, int count)
    {
        Base = baseFrame;
        Count = count;
        _used = new ulong[(count + 63) / 64];
        _free = count;
        int tail = _used.Length * 64 - count;
        if (tail > 0) _used[^1] = ~0UL << (64 - tail);
    }

    /// <summary>Fault injection (null: none) and the point single-page allocations report.</summary>
    public FaultInjector? Faults { get; init; }
    public FaultPoint Point { get; init; } = FaultPoint.RamPages;

    public ulong Base { get; }
    public int Count { get; }
    public int FreeCount { get { lock (_lock) return _free; } }

    /// <summary>Allocates <paramref name="into"/>.Length single frames (all or nothing).</summary>
    public bool TryAllocate(Span<GuestFrame> into)
    {
        if (Faults?.ShouldFail(Point) == true) return false;
        lock (_lock)
        {
            if (_free < into.Length) return false;
            // Invariant: every word below _hint is full, so the scan starts there and never wraps.
            int n = 0;
            for (int w = _hint; w < _used.Length && n < into.Length; w++)
            {
                while (n < into.Length)
                {
                    ulong freeBits = ~_used[w];
                    if (freeBits == 0) break;
                    int bit = BitOperations.TrailingZeroCount(freeBits);
                    _used[w] |= 1UL << bit;
                    into[n++] = new GuestFrame(Base + (ulong)(w * 64 + bit));
                }
                if (n == into.Length) _hint = w;
            }
            _free -= n;
            return true;
        }
    }

    /// <summary>Allocates <paramref name="count"/> contiguous frames.</summary>
    public bool TryAllocateContiguous(int count, out GuestFrame first)
    {
        first = default;
        if (Faults?.ShouldFail(FaultPoint.RamContiguous) == true) return false;
        lock (_lock)
        {
            int run = 0;
            for (int f = 0; f < Count; f++)
            {
                if ((_used[f >> 6] & (1UL << (f & 63))) != 0) { run = 0; continue; }
                if (++run < count) continue;
                int start = f - count + 1;
                for (int g = start; g <= f; g++) _used[g >> 6] |= 1UL << (g & 63);
                _free -= count;
                first = new GuestFrame(Base + (ulong)start);
                return true;
            }
        }
        first = default;
        return false;
    }

    public void Free(GuestFrame frame)
    {
        int f = checked((int)(frame.Value - Base));
        lock (_lock)
        {
            ulong bit = 1UL << (f & 63);
            if ((_used[f >> 6] & bit) == 0) throw new InvalidOperationException($"double free of gfn {frame}");
            _used[f >> 6] &= ~bit;
            _free++;
            if ((f >> 6) < _hint) _hint = f >> 6;
        }
    }
}
