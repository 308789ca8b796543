using XenShare.Conformance;
using XenShare.Emulation;
using XenShare.Emulation.Kernel;
using XenShare.Xenstore;

namespace XenShare.Tests.Conformance;

/// <summary>Runs both halves of a two-domain scenario on one emulated host at the same time, each over its own
/// domain's <c>/dev/xen/xenbus</c>, as the real-Xen stage runs them in dom0 and in a domU.</summary>
internal static class TwoDomainHalves
{
    public static async Task<(ScenarioResult Dom0, ScenarioResult DomU)> RunAsync(
        TwoDomainScenarios.Scenario s, GuestProcess p0, EmulatedGuest dom0, GuestProcess pu, EmulatedGuest domU)
    {
        await using var xs0 = XenstoreClient.OpenXenbus(p0);
        await using var xsU = XenstoreClient.OpenXenbus(pu);
        var c0 = new TwoDomainContext(p0, dom0.Id, domU.Id, domU.Id, xs0);
        var cU = new TwoDomainContext(pu, domU.Id, dom0.Id, domU.Id, xsU);
        var results = await Task.WhenAll(
            Task.Run(() => TwoDomainScenarios.RunDom0(s, c0)),
            Task.Run(() => TwoDomainScenarios.RunDomU(s, cU))).WaitAsync(TimeSpan.FromMinutes(4));
        return (results[0], results[1]);
    }
}
