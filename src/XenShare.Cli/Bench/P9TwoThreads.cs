using XenShare.Api;

namespace XenShare.Cli.Bench;

/// <summary>P9: two threads on two independent gntdev files (two processes, two granting domUs) running
/// export/close/wait loops, vs one thread.</summary>
internal sealed class P9TwoThreads : BenchTarget
{
    public override string Id => "P9";

    public override string Title => "export/release loop: two threads on two gntdev files vs one";

    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fx = new DmaBufFixture(16, guests: 2);
        var lanes = new (GrantDevice Gnt, GrantRef[] Refs, DomainId DomU)[2];
        for (int i = 0; i < 2; i++) lanes[i] = (GrantDevice.Open(fx.StartDom0Process()), fx.Refs(i), fx.Guests[i].Id);
        int cycles = Math.Max(100, options.Scale(20000));

        void Loop(int lane)
        {
            var (gnt, refs, domU) = lanes[lane];
            for (int i = 0; i < cycles; i++)
            {
                var b = gnt.ExportDmaBuf(domU, refs);
                b.Close();
                if (!b.WaitForRelease(TimeSpan.FromSeconds(30))) throw new InvalidOperationException("not released");
            }
        }

        try
        {
            var (two, one) = Measure.Interleaved(options with { Repetitions = Math.Max(3, options.Repetitions / 3) },
                () => Parallel.Invoke(new ParallelOptions { MaxDegreeOfParallelism = 2 }, () => Loop(0), () => Loop(1)),
                () => Loop(0));
            double twoRate = 2 * cycles / two, oneRate = cycles / one;
            return BenchRow.Create(Id,
                $"export (16 refs) + close + wait cycles/s, two threads on two gntdev files (two domUs) vs one thread; {Environment.ProcessorCount} cores",
                twoRate, "cycles/s", oneRate, "cycles/s one thread", BenchGoal.AtLeastRatio(1.6));
        }
        finally
        {
            foreach (var l in lanes) l.Gnt.Dispose();
        }
    }
}
