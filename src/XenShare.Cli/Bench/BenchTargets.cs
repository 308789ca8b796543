namespace XenShare.Cli.Bench;

/// <summary>The implemented targets, in report order, and the runner.</summary>
internal static class BenchTargets
{
    /// <summary>Every implemented target (docs/performance.md explains each). P10 and P13 need a real Xen domain
    /// and are not here: tools/conformance-runner measures P10 in the real-Xen stage; P13 is not measured yet.</summary>
    public static IReadOnlyList<BenchTarget> All { get; } =
    [
        new P1MapUnmap(),
        new P2ExportFrame(),
        new P3PageFlip(),
        new P4GrantCopy(),
        new P5WaitWakeup(),
        new P6ManyLiveExports(),
        new P7HotPathAllocations(),
        new P7bExportCycleAllocations(),
        new P8BytesPerMappedPage(),
        new P9TwoThreads(),
        new P11DisplifFlip(),
        new P12XenstoreWatch(),
    ];

    /// <summary>The targets named in a comma-separated list (case-insensitive), in report order; all of
    /// them for null or empty. Unknown ids are returned in <paramref name="unknown"/>.</summary>
    public static IReadOnlyList<BenchTarget> Select(string? only, out IReadOnlyList<string> unknown)
    {
        if (string.IsNullOrWhiteSpace(only))
        {
            unknown = [];
            return All;
        }

        var ids = only.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        unknown = ids.Where(id => !All.Any(t => string.Equals(t.Id, id, StringComparison.OrdinalIgnoreCase))).ToList();
        return All.Where(t => ids.Contains(t.Id, StringComparer.OrdinalIgnoreCase)).ToList();
    }

    /// <summary>Runs targets one after the other, collecting garbage between them.</summary>
    public static List<BenchRow> Run(IEnumerable<BenchTarget> targets, BenchOptions options, Action<BenchTarget>? starting = null)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var rows = new List<BenchRow>();
        foreach (var target in targets)
        {
            starting?.Invoke(target);
            GC.Collect();
            GC.WaitForPendingFinalizers();
            GC.Collect();
            rows.Add(target.Run(options));
        }

        return rows;
    }
}
