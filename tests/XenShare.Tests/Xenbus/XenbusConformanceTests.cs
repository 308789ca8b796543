using XenShare.Conformance;
using XenShare.Tests.Emulation;
using XenShare.Xenstore;

namespace XenShare.Tests.Xenbus;

/// <summary>The xenbus two-domain scenarios (<see cref="XenbusScenarios"/>, XB02+XB03) on the emulator: the dom0
/// half (backend, and toolstack for its device) in a dom0 process and the domU half (frontend) in a domU
/// process run at the same time, as in the real-Xen stage between dom0 and the domU <c>xl</c> created.</summary>
public sealed class XenbusConformanceTests : EmulatorTest
{
    public static TheoryData<string> Cases()
    {
        var data = new TheoryData<string>();
        foreach (var s in XenbusScenarios.All) data.Add(s.Ids);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task XB02_XB03_TwoDomainScenario_BothHalvesPass(string ids)
    {
        var s = XenbusScenarios.All.Single(x => x.Ids == ids);
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
        // The scenario removed the device it created (the mailbox stays, as for the other two-domain scenarios).
        Assert.DoesNotContain(XenbusScenarios.DeviceType, Host.Xenstore.Directory($"/local/domain/{DomU.Id.Value}/device"));
        Assert.DoesNotContain(XenbusScenarios.DeviceType, Host.Xenstore.Directory("/local/domain/0/backend"));
    }

    [Fact]
    public async Task XB02_XB03_TwoDomainScenario_RunsTwiceOnOneHost_WithAFreshDeviceId()
    {
        // As in a real dom0 where an earlier run (or xl) left a device of the type: the scenario picks a new id.
        Host.AddDevice(DomU, Dom0, XenbusScenarios.DeviceType, 0);
        var s = XenbusScenarios.All[0];
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        var dom0 = new TwoDomainContext(P0, Dom0.Id, DomU.Id, DomU.Id, xs0);
        var domU = new TwoDomainContext(PU, DomU.Id, Dom0.Id, DomU.Id, xsU);
        var results = await Task.WhenAll(
            Task.Run(() => TwoDomainScenarios.RunDom0(s, dom0)),
            Task.Run(() => TwoDomainScenarios.RunDomU(s, domU))).WaitAsync(TimeSpan.FromMinutes(4));
        Assert.True(results[0].Outcome == Outcome.Pass, "dom0 half: " + results[0].Message);
        Assert.True(results[1].Outcome == Outcome.Pass, "domU half: " + results[1].Message);
        Assert.Equal("1", Host.Xenstore.Read($"/local/domain/{DomU.Id.Value}/device/{XenbusScenarios.DeviceType}/0/state"));   // untouched
    }
}
