using System.Globalization;

namespace XenShare.Cli.Bench;

/// <summary>
/// P7b: managed bytes allocated per export cycle (EXP_FROM_REFS of one ref through the typed API, close,
/// EXP_WAIT_RELEASED), counted with <see cref="GC.GetAllocatedBytesForCurrentThread"/> after warm-up, against
/// its budget of 256 bytes (the cycle creates the buffer's kernel objects; pooling keeps it within budget).
/// </summary>
internal sealed class P7bExportCycleAllocations : BenchTarget
{
    /// <summary>The budget in bytes per cycle.</summary>
    public const double BudgetBytes = 256;

    /// <inheritdoc/>
    public override string Id => "P7b";

    /// <inheritdoc/>
    public override string Title => "managed allocation per export cycle (export + close + wait released)";

    /// <inheritdoc/>
    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fx = new DmaBufFixture(1, dom0Unpopulated: 4096, maxFds: 1024);
        var p0 = fx.StartDom0Process();
        using var gnt = XenShare.Api.GrantDevice.Open(p0);
        var refs = fx.Refs();
        var domU = fx.Guests[0].Id;
        int iterations = Math.Max(50, options.Scale(250));
        for (int i = 0; i < Math.Max(16, options.WarmupRepetitions * 16); i++) Cycle();
        var perOp = new double[options.Repetitions];
        for (int r = 0; r < perOp.Length; r++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < iterations; i++) Cycle();
            perOp[r] = (double)(GC.GetAllocatedBytesForCurrentThread() - before) / iterations;
        }
        double value = Measure.Median(perOp);
        return BenchRow.Create(Id,
            string.Create(CultureInfo.InvariantCulture, $"managed bytes per export cycle: EXP_FROM_REFS (1 ref, typed API) + close + EXP_WAIT_RELEASED, median of {perOp.Length} x {iterations}, vs a {BudgetBytes:0} B budget"),
            value, "B/cycle", BudgetBytes, "B/cycle budget", BenchGoal.AtMostRatio(1));

        void Cycle()
        {
            var b = gnt.ExportDmaBuf(domU, refs);
            b.Close();
            if (!b.WaitForRelease(TimeSpan.FromSeconds(30))) throw new InvalidOperationException("not released");
        }
    }
}
