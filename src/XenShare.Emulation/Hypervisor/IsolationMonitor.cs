namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// The emulated host's cross-domain use-after-free detector. The host knows, for every machine frame,
/// which domains map it through grants (<see cref="XenHost.GrantMappingsOf"/>); this monitor collects
/// every moment a mapped frame is freed to its owner's allocator (a guest page free, or Xen's own free),
/// scrubbed, or given to an owner, and every reference taken on a guest page whose count is 0. Each
/// finding names both domains, the frame, the refs and the call that did it. Tests assert that the list is
/// empty after every test (next to the leak check and the invariants); users' own tests can do the same.
/// </summary>
/// <remarks>Lock: <c>_lock</c> guards the list; a leaf. <see cref="HazardDetected"/> runs after it is
/// released, on the thread that caused the hazard.</remarks>
public sealed class IsolationMonitor
{
    /// <summary>Findings kept in <see cref="Hazards"/>; later ones are counted only.</summary>
    public const int MaxKept = 256;

    private readonly object _lock = new();
    private readonly List<IsolationHazard> _hazards = new();
    private long _total;

    internal IsolationMonitor() { }

    /// <summary>Raised for every finding, on the thread that caused it.</summary>
    public event EventHandler<IsolationHazard>? HazardDetected;

    /// <summary>Findings since creation or the last <see cref="Clear"/>, including those beyond
    /// <see cref="MaxKept"/>.</summary>
    public long TotalHazards { get { lock (_lock) return _total; } }

    /// <summary>The findings kept (at most <see cref="MaxKept"/>), oldest first.</summary>
    public IReadOnlyList<IsolationHazard> Hazards { get { lock (_lock) return _hazards.ToArray(); } }

    /// <summary>Returns the findings kept and forgets every finding (a test that provokes hazards on
    /// purpose takes them, so the after-test check stays meaningful).</summary>
    public IReadOnlyList<IsolationHazard> TakeAll()
    {
        lock (_lock)
        {
            var all = _hazards.ToArray();
            _hazards.Clear();
            _total = 0;
            return all;
        }
    }

    /// <summary>Forgets every finding.</summary>
    public void Clear() => TakeAll();

    /// <summary>The findings as lines for an after-test check; empty when none.</summary>
    public IReadOnlyList<string> Check()
    {
        lock (_lock)
        {
            var lines = new List<string>(_hazards.Count + 1);
            foreach (var h in _hazards) lines.Add("isolation hazard: " + h);
            if (_total > _hazards.Count) lines.Add($"isolation hazard: {_total - _hazards.Count} more not kept");
            return lines;
        }
    }

    internal void Report(IsolationHazard hazard)
    {
        lock (_lock)
        {
            _total++;
            if (_hazards.Count < MaxKept) _hazards.Add(hazard);
        }
        HazardDetected?.Invoke(this, hazard);
    }
}
