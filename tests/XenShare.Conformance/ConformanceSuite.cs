namespace XenShare.Conformance;

/// <summary>Every conformance scenario, in a stable order.</summary>
public static class ConformanceSuite
{
    private static readonly ConformanceScenario[] Scenarios =
        [.. GntDevScenarios.All(), .. DmaBufScenarios.All(), .. LibraryScenarios.All(), .. LifetimeScenarios.All(), .. XenstoreScenarios.All()];

    /// <summary>All scenarios.</summary>
    public static IReadOnlyList<ConformanceScenario> All => Scenarios;

    /// <summary>Finds a scenario by its IDs string.</summary>
    public static ConformanceScenario Get(string ids) => Scenarios.First(s => s.Ids == ids);
}
