using System.Globalization;

namespace XenShare.Cli.Bench;

/// <summary>A target on a same-run ratio: at most or at least <see cref="Limit"/>.</summary>
/// <param name="AtMost">True for <c>ratio &lt;= Limit</c>, false for <c>ratio &gt;= Limit</c>.</param>
/// <param name="Limit">The bound.</param>
internal readonly record struct BenchGoal(bool AtMost, double Limit)
{
    /// <summary><c>ratio &lt;= limit</c>.</summary>
    public static BenchGoal AtMostRatio(double limit) => new(true, limit);

    /// <summary><c>ratio &gt;= limit</c>.</summary>
    public static BenchGoal AtLeastRatio(double limit) => new(false, limit);

    /// <summary>"&lt;= 0.35" or "&gt;= 0.7".</summary>
    public string Text => (AtMost ? "<= " : ">= ") + Limit.ToString("0.###", CultureInfo.InvariantCulture);

    /// <summary>Whether a ratio meets the goal.</summary>
    public bool IsMet(double ratio) => AtMost ? ratio <= Limit : ratio >= Limit;
}
