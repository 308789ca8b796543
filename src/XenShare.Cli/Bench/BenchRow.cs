namespace XenShare.Cli.Bench;

/// <summary>
/// One measured target: the value, the same-run baseline it is judged against, their ratio
/// (<see cref="Value"/> / <see cref="Baseline"/>), the target on that ratio and whether it is met.
/// </summary>
/// <param name="Id">Target id from docs (P1, P4, ...).</param>
/// <param name="What">What was measured, and against what.</param>
/// <param name="Value">The measured value.</param>
/// <param name="Unit">Unit of <paramref name="Value"/>.</param>
/// <param name="Baseline">The baseline (measured in the same run, or a fixed budget).</param>
/// <param name="BaselineUnit">Unit and nature of <paramref name="Baseline"/>.</param>
/// <param name="Ratio"><paramref name="Value"/> / <paramref name="Baseline"/>.</param>
/// <param name="Target">The target on the ratio, e.g. <c>&lt;= 0.35</c>.</param>
/// <param name="Pass">Whether <paramref name="Ratio"/> meets <paramref name="Target"/>.</param>
internal sealed record BenchRow(
    string Id,
    string What,
    double Value,
    string Unit,
    double Baseline,
    string BaselineUnit,
    double Ratio,
    string Target,
    bool Pass)
{
    /// <summary>Builds a row: the ratio is computed here and judged by <paramref name="goal"/>.</summary>
    public static BenchRow Create(string id, string what, double value, string unit, double baseline, string baselineUnit, BenchGoal goal)
    {
        if (!(baseline > 0) || !double.IsFinite(baseline)) throw new ArgumentOutOfRangeException(nameof(baseline), $"{id}: baseline must be positive, got {baseline}");
        if (!double.IsFinite(value)) throw new ArgumentOutOfRangeException(nameof(value), $"{id}: value must be finite, got {value}");
        double ratio = value / baseline;
        return new BenchRow(id, what, value, unit, baseline, baselineUnit, ratio, goal.Text, goal.IsMet(ratio));
    }
}
