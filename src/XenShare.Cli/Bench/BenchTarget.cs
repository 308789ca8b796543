namespace XenShare.Cli.Bench;

/// <summary>
/// One performance target of docs/perf (one class per id): measures the value and its same-run baseline
/// in this process and returns a <see cref="BenchRow"/>. Add a target by adding a class and listing it in
/// <see cref="BenchTargets.All"/>.
/// </summary>
internal abstract class BenchTarget
{
    /// <summary>The target id (P1, P4, ...).</summary>
    public abstract string Id { get; }

    /// <summary>A one-line description for listings.</summary>
    public abstract string Title { get; }

    /// <summary>Measures the target and its baseline.</summary>
    public abstract BenchRow Run(BenchOptions options);
}
