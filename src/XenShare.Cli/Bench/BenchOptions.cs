namespace XenShare.Cli.Bench;

/// <summary>How long to measure. <see cref="Default"/> is what <c>xenshare bench</c> uses; <see cref="Quick"/>
/// does the same work with few repetitions and small sizes (tests: shape, not speed).</summary>
internal sealed record BenchOptions
{
    /// <summary>Measured repetitions per target (the median is reported).</summary>
    public int Repetitions { get; init; } = 21;

    /// <summary>Discarded warm-up repetitions.</summary>
    public int WarmupRepetitions { get; init; } = 3;

    /// <summary>Multiplier on the work done inside one repetition (1 = full size).</summary>
    public double WorkScale { get; init; } = 1.0;

    /// <summary>True for the reduced setting used by tests.</summary>
    public bool IsQuick { get; init; }

    /// <summary>The full run of <c>xenshare bench</c>.</summary>
    public static BenchOptions Default { get; } = new();

    /// <summary>A reduced run for tests: 3 repetitions, 1 warm-up, 1/16 of the work, smaller P8.</summary>
    public static BenchOptions Quick { get; } = new() { Repetitions = 3, WarmupRepetitions = 1, WorkScale = 1.0 / 16, IsQuick = true };

    /// <summary><paramref name="full"/> scaled by <see cref="WorkScale"/>, at least 1.</summary>
    public int Scale(int full) => Math.Max(1, (int)(full * WorkScale));
}
