using System.Diagnostics;

namespace XenShare.Cli.Bench;

/// <summary>Timing helpers: Stopwatch around a repeated body, interleaved with the baseline so both see
/// the same machine noise, medians of the repetitions.</summary>
internal static class Measure
{
    /// <summary>Runs <paramref name="measured"/> and <paramref name="baseline"/> alternately
    /// (warm-up repetitions first, discarded) and returns the median seconds of each.</summary>
    public static (double Measured, double Baseline) Interleaved(BenchOptions options, Action measured, Action baseline)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(measured);
        ArgumentNullException.ThrowIfNull(baseline);
        for (int i = 0; i < options.WarmupRepetitions; i++)
        {
            measured();
            baseline();
        }

        var a = new double[options.Repetitions];
        var b = new double[options.Repetitions];
        for (int i = 0; i < options.Repetitions; i++)
        {
            // Alternate which goes first so neither always runs right after the other's cache effects.
            if ((i & 1) == 0)
            {
                a[i] = Seconds(measured);
                b[i] = Seconds(baseline);
            }
            else
            {
                b[i] = Seconds(baseline);
                a[i] = Seconds(measured);
            }
        }

        return (Median(a), Median(b));
    }

    /// <summary>Seconds taken by one call.</summary>
    public static double Seconds(Action body)
    {
        ArgumentNullException.ThrowIfNull(body);
        long start = Stopwatch.GetTimestamp();
        body();
        return Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    /// <summary>The median (mean of the middle two for an even count).</summary>
    public static double Median(double[] values)
    {
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length == 0) throw new ArgumentException("no values", nameof(values));
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
