using XenShare.Conformance;
using XenShare.Tests.Emulation;
using XenShare.Xenstore;

namespace XenShare.Tests.Conformance;

/// <summary>The two-domain scenarios (XD01, XD02+EI09) on the emulator: the dom0 half in a dom0 process and the
/// domU half in a domU process run at the same time and meet through the emulated xenstore, as they do in
/// the real-Xen stage between dom0 and the domU that <c>xl</c> created.</summary>
public sealed class TwoDomainConformanceTests : EmulatorTest
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
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        var dom0 = new TwoDomainContext(P0, Dom0.Id, DomU.Id, DomU.Id, xs0);
        var domU = new TwoDomainContext(PU, DomU.Id, Dom0.Id, DomU.Id, xsU);
        var halves = new[]
        {
            Task.Run(() => TwoDomainScenarios.RunDom0(s, dom0)),
            Task.Run(() => TwoDomainScenarios.RunDomU(s, domU)),
        };
        var results = await Task.WhenAll(halves).WaitAsync(TimeSpan.FromMinutes(4));
        Assert.True(results[0].Outcome == Outcome.Pass, $"{ids} dom0 half: {results[0].Message}");
        Assert.True(results[1].Outcome == Outcome.Pass, $"{ids} domU half: {results[1].Message}");
    }
}
