using System.Diagnostics;
using XenShare.Emulation;
using Xunit.Abstractions;

namespace XenShare.Tests.Reliability;

/// <summary>Campaign 1: ioctl fuzzing of every emulated driver (see <see cref="IoctlFuzzer"/>). Short in
/// CI, long with XENSHARE_STRESS=1; every failure prints the seed to replay with XENSHARE_SEED.</summary>
public sealed class IoctlFuzzTests(ITestOutputHelper output)
{
    [Fact]
    public void Fuzz_EveryIoctlDecoder_SpecErrnoOnly_InvariantsHold_NoLeaks() => Run(faults: false, 3.0);

    /// <summary>The same with allocation faults injected at random (1 %) at every fault point.</summary>
    [Fact]
    public void Fuzz_WithRandomAllocationFaults_SpecErrnoOnly_NoLeaks() => Run(faults: true, 2.0);

    private void Run(bool faults, double seconds)
    {
        var deadline = Stopwatch.StartNew();
        var budget = Stress.Duration(seconds);
        long steps = 0, ioctls = 0, successes = 0, worlds = 0, injected = 0;
        while (deadline.Elapsed < budget)
        {
            int seed = Stress.Seed();
            worlds++;
            using var w = new SmallWorld(guests: 2, withPv: true);
            var fz = new IoctlFuzzer(w, seed);
            if (faults) w.Xen.Faults.FailRandomly(0.01, seed, Enum.GetValues<FaultPoint>());
            int n = 0;
            try
            {
                for (; n < 4000 && deadline.Elapsed < budget; n++)
                {
                    string? bad = fz.Step();
                    if (bad is not null) Fail(seed, n, bad, fz);
                    if (n % 500 == 499)
                    {
                        w.Xen.Faults.Disarm();
                        Checks.Invariants(w.Xen, $"after step {n}");
                        Checks.Isolated(w.Host, $"after step {n}");
                        if (faults) w.Xen.Faults.FailRandomly(0.01, seed + n, Enum.GetValues<FaultPoint>());
                    }
                }
                w.Xen.Faults.Disarm();
                Checks.Invariants(w.Xen, "at the end");
                w.ExitAll();
                Checks.NoLeaks(w.Host, "after every process exited");
                Checks.Invariants(w.Xen, "after every process exited");
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                Fail(seed, n, $"exception escaped: {e}", fz);
            }
            catch (Xunit.Sdk.XunitException e)
            {
                Fail(seed, n, e.Message, fz);
            }
            steps += fz.Syscalls;
            ioctls += fz.Ioctls;
            successes += fz.Successes;
            injected += w.Xen.Faults.TotalInjected;
            if (Environment.GetEnvironmentVariable("XENSHARE_SEED") is not null) break;
        }
        Stress.Report(output, $"fuzz{(faults ? "+faults" : "")}: {worlds} worlds, {steps} syscalls, {ioctls} ioctl inputs fuzzed, {successes} succeeded, {injected} faults injected, leaks 0, {deadline.Elapsed.TotalSeconds:F1} s");
    }

    private static void Fail(int seed, int step, string why, IoctlFuzzer fz) =>
        throw new Xunit.Sdk.XunitException($"fuzz seed {seed} (replay: XENSHARE_SEED={seed}) step {step}: {why}\n  recent:\n    {fz.RecentLog}");
}
