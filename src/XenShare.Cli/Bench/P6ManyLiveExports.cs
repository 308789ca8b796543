using XenShare.Api;

namespace XenShare.Cli.Bench;

/// <summary>P6: export / close / wait throughput with 100 000 live exports in one gntdev file, vs 10 live
/// exports (the wait looks the fd up in O(1); Linux walks a list).</summary>
internal sealed class P6ManyLiveExports : BenchTarget
{
    public override string Id => "P6";

    public override string Title => "export/wait/release with 100 000 live exports vs 10";

    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        int many = options.IsQuick ? 5_000 : 100_000;
        using var fx = new DmaBufFixture(1);
        var p0 = fx.StartDom0Process();
        using var gnt = GrantDevice.Open(p0);
        var refs = fx.Refs();
        var domU = fx.Guests[0].Id;
        int cycles = Math.Max(50, options.Scale(2000));

        double Throughput()
        {
            var time = Measure.Seconds(() =>
            {
                for (int i = 0; i < cycles; i++)
                {
                    var b = gnt.ExportDmaBuf(domU, refs);
                    b.Close();
                    if (!b.WaitForRelease(TimeSpan.FromSeconds(30))) throw new InvalidOperationException("not released");
                }
            });
            return cycles / time;
        }

        var live = new List<ExportedDmaBuf>(many);
        try
        {
            for (int i = 0; i < 10; i++) live.Add(gnt.ExportDmaBuf(domU, refs));
            Throughput();
            var few = new double[Math.Max(3, options.Repetitions / 3)];
            for (int i = 0; i < few.Length; i++) few[i] = Throughput();
            while (live.Count < many) live.Add(gnt.ExportDmaBuf(domU, refs));
            var lots = new double[few.Length];
            for (int i = 0; i < lots.Length; i++) lots[i] = Throughput();
            return BenchRow.Create(Id,
                $"export + close + EXP_WAIT_RELEASED cycles/s with {many:N0} live exports in the file vs with 10",
                Measure.Median(lots), "cycles/s", Measure.Median(few), "cycles/s with 10 live", BenchGoal.AtLeastRatio(0.8));
        }
        finally
        {
            foreach (var b in live) b.Close();
        }
    }
}
