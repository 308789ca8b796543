using System.Diagnostics;
using XenShare.Api;

namespace XenShare.Cli.Bench;

/// <summary>P5: wake-up latency of EXP_WAIT_RELEASED after the last close from another thread, vs a raw
/// ManualResetEventSlim round trip measured the same way (the waiter really asleep in both). The async
/// API is measured against a TaskCompletionSource round trip and reported in the What text.</summary>
internal sealed class P5WaitWakeup : BenchTarget
{
    public override string Id => "P5";

    public override string Title => "wait-for-release wake-up after the last close, vs ManualResetEventSlim";

    private static void LetWaiterSleep()
    {
        // A benchmark, not a test: give the waiter time to block for real (both sides get the same).
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed.TotalMilliseconds < 2) Thread.SpinWait(50);
    }

    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fx = new DmaBufFixture(1);
        var p0 = fx.StartDom0Process();
        using var gnt = GrantDevice.Open(p0);
        var refs = fx.Refs();
        var domU = fx.Guests[0].Id;
        int samples = Math.Max(5, options.Scale(41));

        double Blocking()
        {
            var buf = gnt.ExportDmaBuf(domU, refs);
            long woke = 0;
            var t = new Thread(() => { buf.WaitForRelease(TimeSpan.FromSeconds(30)); woke = Stopwatch.GetTimestamp(); });
            t.Start();
            LetWaiterSleep();
            long start = Stopwatch.GetTimestamp();
            buf.Close();
            t.Join();
            return Stopwatch.GetElapsedTime(start, woke).TotalMicroseconds;
        }

        double Mres()
        {
            using var ev = new ManualResetEventSlim(false);
            long woke = 0;
            var t = new Thread(() => { ev.Wait(); woke = Stopwatch.GetTimestamp(); });
            t.Start();
            LetWaiterSleep();
            long start = Stopwatch.GetTimestamp();
            ev.Set();
            t.Join();
            return Stopwatch.GetElapsedTime(start, woke).TotalMicroseconds;
        }

        double Async()
        {
            var buf = gnt.ExportDmaBuf(domU, refs);
            long woke = 0;
            var done = Task.Run(async () => { await buf.WaitForReleaseAsync(TimeSpan.FromSeconds(30)).ConfigureAwait(false); woke = Stopwatch.GetTimestamp(); });
            LetWaiterSleep();
            long start = Stopwatch.GetTimestamp();
            buf.Close();
            done.GetAwaiter().GetResult();
            return Stopwatch.GetElapsedTime(start, woke).TotalMicroseconds;
        }

        double Tcs()
        {
            var tcs = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            long woke = 0;
            var done = Task.Run(async () => { await tcs.Task.ConfigureAwait(false); woke = Stopwatch.GetTimestamp(); });
            LetWaiterSleep();
            long start = Stopwatch.GetTimestamp();
            tcs.SetResult();
            done.GetAwaiter().GetResult();
            return Stopwatch.GetElapsedTime(start, woke).TotalMicroseconds;
        }

        for (int i = 0; i < 3; i++) { Blocking(); Mres(); Async(); Tcs(); }
        var b = new double[samples]; var m = new double[samples]; var a = new double[samples]; var c = new double[samples];
        for (int i = 0; i < samples; i++) { b[i] = Blocking(); m[i] = Mres(); a[i] = Async(); c[i] = Tcs(); }
        double blocking = Measure.Median(b), mres = Measure.Median(m), async = Measure.Median(a), tcsRt = Measure.Median(c);
        return BenchRow.Create(Id,
            $"EXP_WAIT_RELEASED wake-up after close on another thread (blocking ioctl); async API {async:0.0} us vs TaskCompletionSource {tcsRt:0.0} us (ratio {async / tcsRt:0.00}); event-driven, never timer-polled",
            blocking, "us", mres, "us ManualResetEventSlim", BenchGoal.AtMostRatio(2));
    }
}
