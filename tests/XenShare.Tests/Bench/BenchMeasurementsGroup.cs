namespace XenShare.Tests.Bench;

/// <summary>
/// The bench tests read process-wide GC counters (P8's heap growth); run alone so that other tests'
/// allocations do not land inside a measurement.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class BenchMeasurementsGroup
{
    public const string Name = "Bench measurements";
}
