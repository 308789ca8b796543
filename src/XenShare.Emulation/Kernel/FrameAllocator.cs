using System.Numerics;

namespace XenShare.Emulation.Kernel;

/// <summary>
/// A bitmap allocator over a range of guest frames [Base, Base + Count): single pages and contiguous
/// runs (first fit).
/// </summary>
/// <remarks>
/// Locks: large ranges are split into stripes, each with its own lock, free count and hint (every word
/// below a stripe's hint is full). A thread allocates single pages from its home stripe (by managed thread
/// id) and a frame is freed under the lock of the stripe it belongs to, so two threads mapping in one
/// domain do not contend (P9). An allocation its home stripe cannot satisfy, and every contiguous
/// allocation, takes all stripe locks in ascending order. Leaves: nothing else is taken while held.
/// </remarks>
internal sealed class FrameAllocator
{
    private const int StripeCountForLargeRanges = 4;
    private const int LargeRangeWords = 256;   // 16 384 frames

    private sealed class Stripe
    {
        public readonly object Lock = new();
        public int StartWord;
        public int EndWord;
        public int Hint;
        public int Free;
    }

    private readonly ulong[] _used;
    private readonly Stripe[] _stripes;
    private readonly int _wordsPerStripe;

    public FrameAllocator(ulong baseFrame, int count)
    {
        Base = baseFrame;
        Count = count;
        _used = new ulong[(count + 63) / 64];
        int tail = _used.Length * 64 - count;
        if (tail > 0) _used[^1] = ~0UL << (64 - tail);
        int stripes = _used.Length >= LargeRangeWords ? StripeCountForLargeRanges : 1;
        _wordsPerStripe = Math.Max(1, (_used.Length + stripes - 1) / stripes);
        _stripes = new Stripe[stripes];
        for (int i = 0; i < stripes; i++)
        {
            int start = Math.Min(_used.Length, i * _wordsPerStripe), end = Math.Min(_used.Length, start + _wordsPerStripe);
            int free = 0;
            for (int w = start; w < end; w++) free += BitOperations.PopCount(~_used[w]);
            _stripes[i] = new Stripe { StartWord = start, EndWord = end, Hint = start, Free = free };
        }
    }

    /// <summary>Fault injection (null: none) and the point single-page allocations report.</summary>
    public FaultInjector? Faults { get; init; }
    public FaultPoint Point { get; init; } = FaultPoint.RamPages;

    public ulong Base { get; }
    public int Count { get; }

    public int FreeCount
    {
        get
        {
            int n = 0;
            foreach (var s in _stripes) lock (s.Lock) n += s.Free;
            return n;
        }
    }

    private Stripe StripeOfWord(int word) => _stripes[word / _wordsPerStripe];

    /// <summary>Allocates <paramref name="into"/>.Length single frames (all or nothing).</summary>
    public bool TryAllocate(Span<GuestFrame> into)
    {
        if (Faults?.ShouldFail(Point) == true) return false;
        if (into.IsEmpty) return true;
        var home = _stripes[ThreadShard.Home(_stripes.Length)];
        lock (home.Lock)
        {
            if (home.Free >= into.Length)
            {
                int got = TakeLocked(home, into);
                return got == into.Length ? true : throw new InvalidOperationException("frame allocator free count out of step");
            }
        }
        // Not enough in the home stripe: all stripes, in order.
        EnterAll();
        try
        {
            int total = 0;
            foreach (var s in _stripes) total += s.Free;
            if (total < into.Length) return false;
            int n = 0;
            foreach (var s in _stripes)
            {
                if (n == into.Length) break;
                n += TakeLocked(s, into[n..]);
            }
            return true;
        }
        finally { ExitAll(); }
    }

    /// <summary>Takes up to into.Length frames from one stripe (its lock held); returns how many.</summary>
    private int TakeLocked(Stripe s, Span<GuestFrame> into)
    {
        int n = 0;
        for (int w = s.Hint; w < s.EndWord && n < into.Length; w++)
        {
            while (n < into.Length)
            {
                ulong freeBits = ~_used[w];
                if (freeBits == 0) break;
                int bit = BitOperations.TrailingZeroCount(freeBits);
                _used[w] |= 1UL << bit;
                into[n++] = new GuestFrame(Base + (ulong)(w * 64 + bit));
            }
            // Invariant: every word below the hint is full.
            if (_used[w] == ulong.MaxValue) s.Hint = w + 1; else s.Hint = w;
        }
        s.Free -= n;
        return n;
    }

    /// <summary>Allocates <paramref name="count"/> contiguous frames.</summary>
    public bool TryAllocateContiguous(int count, out GuestFrame first)
    {
        first = default;
        if (Faults?.ShouldFail(FaultPoint.RamContiguous) == true) return false;
        EnterAll();
        try
        {
            int run = 0;
            for (int f = 0; f < Count; f++)
            {
                if ((_used[f >> 6] & (1UL << (f & 63))) != 0) { run = 0; continue; }
                if (++run < count) continue;
                int start = f - count + 1;
                for (int g = start; g <= f; g++)
                {
                    _used[g >> 6] |= 1UL << (g & 63);
                    StripeOfWord(g >> 6).Free--;
                }
                first = new GuestFrame(Base + (ulong)start);
                return true;
            }
            return false;
        }
        finally { ExitAll(); }
    }

    private void EnterAll()
    {
        foreach (var s in _stripes) Monitor.Enter(s.Lock);
    }

    private void ExitAll()
    {
        for (int i = _stripes.Length - 1; i >= 0; i--) Monitor.Exit(_stripes[i].Lock);
    }

    /// <summary>Frees several frames, one stripe lock per frame.</summary>
    public void FreeMany(ReadOnlySpan<GuestFrame> frames)
    {
        foreach (var frame in frames) Free(frame);
    }

    public void Free(GuestFrame frame)
    {
        int f = checked((int)(frame.Value - Base));
        if ((uint)f >= (uint)Count) throw new ArgumentOutOfRangeException(nameof(frame), $"gfn {frame} is not in this allocator");
        var s = StripeOfWord(f >> 6);
        lock (s.Lock)
        {
            ulong bit = 1UL << (f & 63);
            if ((_used[f >> 6] & bit) == 0) throw new InvalidOperationException($"double free of gfn {frame}");
            _used[f >> 6] &= ~bit;
            s.Free++;
            if ((f >> 6) < s.Hint) s.Hint = f >> 6;
        }
    }
}
