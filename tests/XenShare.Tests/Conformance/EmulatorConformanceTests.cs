using XenShare.Conformance;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Conformance;

/// <summary>
/// Runs every scenario of the conformance suite (tests/XenShare.Conformance) on the emulated host, in
/// both configurations: dom0 granting to itself (what real Xen shows in tools/realxen) and a domU whose
/// peer is dom0. Each case is named by the scenario's spec IDs; after each one the host must be clean.
/// The same scenarios run in real dom0 through tools/conformance-runner.
/// </summary>
public sealed class EmulatorConformanceTests
{
    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var s in ConformanceSuite.All)
        {
            data.Add("dom0-self", s.Ids);
            data.Add("domU-dom0", s.Ids);
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Scenario(string configuration, string ids)
    {
        var scenario = ConformanceSuite.Get(ids);
        using var host = new EmulatedHost();
        var domU = host.CreateGuest();
        var testGuest = configuration == "dom0-self" ? host.Dom0 : domU;
        var probe = new Probe(host, domU);
        using var process = testGuest.StartProcess();
        using var peerProcess = host.Dom0.StartProcess();
        var context = new ConformanceContext(process, peerProcess, testGuest.Id, host.Dom0.Id,
            LocalDmaBufSource.DmaHeap, "emulator " + configuration, probe)
        {
            IsBlockedInWait = (managed, _) => testGuest.Kernel.IsInReleaseWait(managed),
        };

        var result = scenario.Run(context);

        Assert.True(result.Outcome == Outcome.Pass, $"{ids} on {configuration}: {result.Outcome}: {result.Message}");
        Assert.True(process.WaitIdle(TimeSpan.FromSeconds(30)) && peerProcess.WaitIdle(TimeSpan.FromSeconds(30)), "a syscall is still in progress");
        var leaks = host.CheckLeaks(); // before the processes exit: an fd or mapping left open is a leak

        Assert.True(leaks.Count == 0, $"{ids} on {configuration} leaked:\n  " + string.Join("\n  ", leaks));
        Assert.Empty(HypervisorInvariants.Check(host.Xen));
        Assert.Empty(host.CheckIsolation());
    }

    /// <summary>The same scenarios in dom0->self, with the gntdev self-export as the local dma-buf (what the
    /// real-Xen run uses when /dev/dma_heap/system is missing).</summary>
    [Theory]
    [MemberData(nameof(ImportCases))]
    public void ScenarioWithSelfExportDmaBuf(string ids)
    {
        var scenario = ConformanceSuite.Get(ids);
        using var host = new EmulatedHost();
        var domU = host.CreateGuest();
        using var process = host.Dom0.StartProcess();
        var context = new ConformanceContext(process, process, host.Dom0.Id, host.Dom0.Id,
            LocalDmaBufSource.GntDevSelfExport, "emulator dom0-self gntdev-export", new Probe(host, domU))
        {
            IsBlockedInWait = (managed, _) => host.Dom0.Kernel.IsInReleaseWait(managed),
        };
        var result = scenario.Run(context);
        Assert.True(result.Outcome == Outcome.Pass, $"{ids}: {result.Outcome}: {result.Message}");
        Assert.True(process.WaitIdle(TimeSpan.FromSeconds(30)), "a syscall is still in progress");
        var leaks = host.CheckLeaks();
        Assert.True(leaks.Count == 0, $"{ids} leaked:\n  " + string.Join("\n  ", leaks));
        Assert.Empty(HypervisorInvariants.Check(host.Xen));
        Assert.Empty(host.CheckIsolation());
    }

    public static TheoryData<string> ImportCases()
    {
        var data = new TheoryData<string>();
        foreach (var s in ConformanceSuite.All)
            if (s.Ids.StartsWith("EI", StringComparison.Ordinal) || s.Ids is "RX03" or "RX05+GT02")
                data.Add(s.Ids);
        return data;
    }

    private sealed class Probe(EmulatedHost host, EmulatedGuest domU) : IEmulatorProbe
    {
        private EmulatedGuest Guest(DomainId id) => id == host.Dom0.Id ? host.Dom0 : domU;

        public (ushort Flags, ushort DomId, uint Frame) GrantEntry(DomainId granter, uint gref) =>
            Guest(granter).Domain.GrantTable.ReadEntry(new GrantRef(gref));

        public int DeferredReclaims(DomainId domain) => Guest(domain).Kernel.DeferredReclaims;
    }
}
