using System.Runtime.CompilerServices;

namespace XenShare.Emulation;

/// <summary>An allocation point of the emulated host that <see cref="FaultInjector"/> can make fail.</summary>
public enum FaultPoint
{
    /// <summary>Machine memory for a domain, one hit per allocation call: a single frame (grant-table frames,
    /// populate_physmap, a Fragmented domain's RAM page), one RAM extent, or a direct-mapped domain's bank.</summary>
    MachineFrame,
    /// <summary>A contiguous run of machine frames (<c>MachineMemory.TryAllocateContiguous</c>).</summary>
    MachineContiguous,
    /// <summary>Guest RAM pages of a kernel (page allocator: gntalloc, anonymous mmap, system heap).</summary>
    RamPages,
    /// <summary>A contiguous guest RAM run (DMA allocations: WC/COHERENT export backing, the reserved heap).</summary>
    RamContiguous,
    /// <summary>Unpopulated guest pages for foreign mappings (gntdev maps, flag-0 export backing).</summary>
    UnpopulatedPages,
    /// <summary>Grant references of a kernel (<c>GrantReferences.Allocate</c>).</summary>
    GrantRefs,
    /// <summary>Growth of a grant table (<c>GrantTable.TryGrow</c>).</summary>
    GrantTableGrow,
    /// <summary>Maptrack handles (<c>MapTrack.Allocate</c>/<c>AllocateMany</c>).</summary>
    MapTrack,
    /// <summary>A file descriptor (<c>GuestProcess.ReserveFd</c>).</summary>
    Fd,
}

/// <summary>
/// Fault injection for the emulated host: makes chosen allocation points fail, either at the Nth hit
/// after arming (Linux's fail-nth) or at random with a seeded probability. One injector per
/// <see cref="Hypervisor.XenHost"/>, shared by its kernels; off by default, and then an allocation pays
/// one volatile flag read.
/// </summary>
/// <remarks>Lock: <c>_lock</c>, a leaf taken only while armed.</remarks>
public sealed class FaultInjector
{
    private static readonly int PointCount = Enum.GetValues<FaultPoint>().Length;
    private readonly object _lock = new();
    private readonly long[] _hits = new long[PointCount];
    private readonly long[] _injected = new long[PointCount];
    private volatile bool _armed;
    private FaultPoint? _nthPoint;
    private long _nth = -1;
    private uint _randomMask;
    private double _probability;
    private Random? _random;

    /// <summary>True while some fault is armed.</summary>
    public bool Armed => _armed;

    /// <summary>Faults injected since creation, over every point.</summary>
    public long TotalInjected { get { lock (_lock) { long n = 0; foreach (var i in _injected) n += i; return n; } } }

    /// <summary>Faults injected at <paramref name="point"/> since creation.</summary>
    public long Injected(FaultPoint point) { lock (_lock) return _injected[(int)point]; }

    /// <summary>Hits of <paramref name="point"/> counted while armed (since the last arm).</summary>
    public long Hits(FaultPoint point) { lock (_lock) return _hits[(int)point]; }

    /// <summary>Makes the <paramref name="n"/>th hit (0-based, counted from now) of <paramref name="point"/>
    /// fail, and only that one.</summary>
    public void FailNth(FaultPoint point, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        lock (_lock)
        {
            Array.Clear(_hits);
            _nthPoint = point;
            _nth = n;
            _armed = true;
        }
    }

    /// <summary>Makes every hit of the given points fail with <paramref name="probability"/>, drawn from a
    /// generator seeded with <paramref name="seed"/> (reproducible for a single thread).</summary>
    public void FailRandomly(double probability, int seed, params FaultPoint[] points)
    {
        ArgumentNullException.ThrowIfNull(points);
        lock (_lock)
        {
            Array.Clear(_hits);
            _randomMask = 0;
            foreach (var p in points) _randomMask |= 1u << (int)p;
            _probability = probability;
            _random = new Random(seed);
            _armed = true;
        }
    }

    /// <summary>Disarms every fault (counters of injected faults are kept).</summary>
    public void Disarm()
    {
        lock (_lock)
        {
            _armed = false;
            _nthPoint = null;
            _nth = -1;
            _randomMask = 0;
            _random = null;
        }
    }

    /// <summary>Called by an allocation point: true when this allocation must fail.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool ShouldFail(FaultPoint point) => _armed && Decide(point);

    private bool Decide(FaultPoint point)
    {
        lock (_lock)
        {
            if (!_armed) return false;
            long hit = _hits[(int)point]++;
            bool fail = (_nthPoint == point && hit == _nth) ||
                        ((_randomMask & (1u << (int)point)) != 0 && _random!.NextDouble() < _probability);
            if (fail) _injected[(int)point]++;
            return fail;
        }
    }
}
