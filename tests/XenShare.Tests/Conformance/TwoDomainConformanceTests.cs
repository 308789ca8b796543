using Xunit.Abstractions;
using XenShare.Conformance;
using XenShare.Tests.Emulation;
using XenShare.Xenstore;

namespace XenShare.Tests.Conformance;

/// <summary>The two-domain scenarios (XD01, XD02+EI09) on the emulator: the dom0 half in a dom0 process and the
/// domU half in a domU process run at the same time and meet through the emulated xenstore, as they do in
/// the real-Xen stage between dom0 and the domU that <c>xl</c> created.</summary>
public sealed class TwoDomainConformanceTests(ITestOutputHelper output) : EmulatorTest
{
    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var s in TwoDomainScenarios.All) data.Add(s.Ids);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task TwoDomainScenario_BothHalvesPass(string ids)
    {
        var s = TwoDomainScenarios.All.Single(x => x.Ids == ids);
        var (dom0, domU) = await TwoDomainHalves.RunAsync(s, P0, Dom0, PU, DomU);
        Assert.True(dom0.Outcome == Outcome.Pass, $"{ids} dom0 half: {dom0.Message}");
        Assert.True(domU.Outcome == Outcome.Pass, $"{ids} domU half: {domU.Message}");
    }

    public static TheoryData<string> VictimCases()
    {
        var data = new TheoryData<string>();
        foreach (var s in TwoDomainScenarios.Victim) data.Add(s.Ids);
        return data;
    }

    /// <summary>XD03+XD04 on the emulator: a third domain (the victim) runs the domU half and is destroyed
    /// by the dom0 half while it runs (<see cref="XenShare.Emulation.EmulatedHost.KillGuest"/>, as <c>xl
    /// destroy</c> in the real-Xen stage); the dom0 half's checks must pass. The victim's half ends when its
    /// kernel halts (its calls fail with EIO); its outcome is not a result.</summary>
    [Theory]
    [MemberData(nameof(VictimCases))]
    public async Task VictimScenario_Dom0HalfPasses_WhenTheDomUIsDestroyedMidway(string ids)
    {
        var s = TwoDomainScenarios.Victim.Single(x => x.Ids == ids);
        var victim = Host.CreateGuest();
        var pv = victim.StartProcess();
        var observed = new System.Collections.Concurrent.ConcurrentQueue<string>();
        try
        {
            await using var xs0 = XenstoreClient.OpenXenbus(P0);
            var xsV = XenstoreClient.OpenXenbus(pv);
            var dom0 = new TwoDomainContext(P0, Dom0.Id, victim.Id, victim.Id, xs0)
            {
                DestroyPeer = () => Task.Run(() => Host.KillGuest(victim)),
                PeerExists = () => Task.FromResult(Host.DomainExists(victim.Id)),
                Observe = observed.Enqueue,
            };
            var domU = new TwoDomainContext(pv, victim.Id, Dom0.Id, victim.Id, xsV);
            var victimHalf = Task.Run(() => TwoDomainScenarios.RunDomU(s, domU));
            var result = await Task.Run(() => TwoDomainScenarios.RunDom0(s, dom0)).WaitAsync(TimeSpan.FromMinutes(4));
            Assert.True(result.Outcome == Outcome.Pass, $"{ids} dom0 half: {result.Message}");
            var dead = await victimHalf.WaitAsync(TimeSpan.FromMinutes(2));
            Assert.Equal(Outcome.Fail, dead.Outcome);   // it never finishes on its own: its domain died under it
            await xsV.DisposeAsync();
            Assert.False(Host.DomainExists(victim.Id));
            Assert.True(victim.Kernel.IsHalted);
            Assert.NotEmpty(observed);
            foreach (var line in observed) output.WriteLine("OBSERVED " + line);
        }
        finally
        {
            pv.Dispose();
        }
    }
}
