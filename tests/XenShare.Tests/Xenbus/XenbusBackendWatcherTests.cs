using System.Globalization;
using XenShare.Tests.Emulation;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Tests.Xenbus;

/// <summary><see cref="XenbusBackendWatcher"/>: a backend finds the devices the toolstack writes for it (XB01, XB03).</summary>
public sealed class XenbusBackendWatcherTests : EmulatorTest
{
    [Fact]
    public async Task XB03_Watcher_ReportsTheDevicesAtEveryChange_ThoseThereFirst_NotOtherTypes()
    {
        Host.AddDevice(DomU, Dom0, "vdispl", 0);
        await using var xs = XenstoreClient.OpenXenbus(P0);
        using var stop = new CancellationTokenSource();
        var log = new EventLog();
        var watching = Task.Run(async () =>
        {
            try
            {
                await foreach (var set in XenbusBackendWatcher.WatchAsync(xs, Dom0.Id, "vdispl", stop.Token))
                    log.Add(string.Join(",", set.Select(d => string.Create(CultureInfo.InvariantCulture, $"{d.Frontend.Value}/{d.Id}")).Order(StringComparer.Ordinal)));
            }
            catch (OperationCanceledException) { }
        });
        string u = DomU.Id.Value.ToString(CultureInfo.InvariantCulture);
        await log.WaitUntilAsync(l => l.Count > 0 && l[0] == $"{u}/0", "the device already there, in the first set");

        Host.AddDevice(DomU, Dom0, "vdispl", 1);
        var other = Host.CreateGuest();
        Host.AddDevice(other, Dom0, "vdispl", 0);
        Host.AddDevice(DomU, Dom0, "vkbd", 0);   // another type: never listed
        string o = other.Id.Value.ToString(CultureInfo.InvariantCulture);
        string all = string.Join(",", new[] { $"{u}/0", $"{u}/1", $"{o}/0" }.Order(StringComparer.Ordinal));
        await log.WaitUntilAsync(l => l.Contains(all), "the new devices");

        Assert.Equal(0, Host.Xenstore.Remove($"/local/domain/0/backend/vdispl/{u}/0"));
        await log.WaitUntilAsync(l => l[^1] == string.Join(",", new[] { $"{u}/1", $"{o}/0" }.Order(StringComparer.Ordinal)), "device 0 gone");
        Assert.Equal(0, Host.Xenstore.Remove($"/local/domain/{u}/device/vdispl/0"));
        Host.AddDevice(DomU, Dom0, "vdispl", 0);
        await log.WaitUntilAsync(l => l[^1] == all, "device 0 back");
        Assert.Equal(all, string.Join(",", (await XenbusBackendWatcher.ListAsync(xs, Dom0.Id, "vdispl")).Select(d => string.Create(CultureInfo.InvariantCulture, $"{d.Frontend.Value}/{d.Id}")).Order(StringComparer.Ordinal)));

        await stop.CancelAsync();
        await watching.WaitAsync(EventLog.Patience);
        Assert.DoesNotContain(log.Items, x => x.Contains("vkbd", StringComparison.Ordinal));
        Host.DestroyGuest(other);
    }
}
