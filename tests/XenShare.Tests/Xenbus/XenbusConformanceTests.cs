using XenShare.Conformance;
using XenShare.Tests.Conformance;
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
        var (dom0, domU) = await TwoDomainHalves.RunAsync(s, P0, Dom0, PU, DomU);
        Assert.True(dom0.Outcome == Outcome.Pass, $"{ids} dom0 half: {dom0.Message}");
        Assert.True(domU.Outcome == Outcome.Pass, $"{ids} domU half: {domU.Message}");
        // The scenario removed the device it created (the mailbox stays, as for the other two-domain scenarios).
        Assert.DoesNotContain(XenbusScenarios.DeviceType, Host.Xenstore.Directory($"/local/domain/{DomU.Id.Value}/device"));
        Assert.DoesNotContain(XenbusScenarios.DeviceType, Host.Xenstore.Directory("/local/domain/0/backend"));
    }

    [Fact]
    public async Task XB02_XB03_TwoDomainScenario_RunsTwiceOnOneHost_WithAFreshDeviceId()
    {
        // As in a real dom0 where an earlier run (or xl) left a device of the type: the scenario picks a new id.
        Host.AddDevice(DomU, Dom0, XenbusScenarios.DeviceType, 0);
        var (dom0, domU) = await TwoDomainHalves.RunAsync(XenbusScenarios.All[0], P0, Dom0, PU, DomU);
        Assert.True(dom0.Outcome == Outcome.Pass, "dom0 half: " + dom0.Message);
        Assert.True(domU.Outcome == Outcome.Pass, "domU half: " + domU.Message);
        Assert.Equal("1", Host.Xenstore.Read($"/local/domain/{DomU.Id.Value}/device/{XenbusScenarios.DeviceType}/0/state"));   // untouched
    }
}
