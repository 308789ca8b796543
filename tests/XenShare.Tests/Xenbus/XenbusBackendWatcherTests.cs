using System.Globalization;
using XenShare.Tests.Emulation;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Tests.Xenbus;

/// <summary><see cref="XenbusBackendWatcher"/>: a backend finds the devices the toolstack writes for it (XB01, XB03).</summary>
public sealed class XenbusBackendWatcherTests : EmulatorTest
{
    [Fact]
    public async Task XB03_Watcher_ReportsDevicesThereAndNew_OnceEach_AndAgainAfterReplug()
    {
        Host.AddDevice(DomU, Dom0, "vdispl", 0);
        await using var xs = XenstoreClient.OpenXenbus(P0);
        using var stop = new CancellationTokenSource();
        var log = new EventLog();
        var watching = Task.Run(async () =>
        {
            try
            {
                await foreach (var d in XenbusBackendWatcher.WatchAsync(xs, Dom0.Id, "vdispl", stop.Token))
                    log.Add(string.Create(CultureInfo.InvariantCulture, $"{d.Frontend.Value}/{d.Id}"));
            }
            catch (OperationCanceledException) { }
        });
        string u = DomU.Id.Value.ToString(CultureInfo.InvariantCulture);
        await log.WaitUntilAsync(l => l.Contains($"{u}/0"), "the device already there");

        Host.AddDevice(DomU, Dom0, "vdispl", 1);
        var other = Host.CreateGuest();
        Host.AddDevice(other, Dom0, "vdispl", 0);
        Host.AddDevice(DomU, Dom0, "vkbd", 0);   // another type: not reported
        string o = other.Id.Value.ToString(CultureInfo.InvariantCulture);
        await log.WaitUntilAsync(l => l.Contains($"{u}/1") && l.Contains($"{o}/0"), "the new devices");

        // The toolstack removes device 0 and writes it again (a re-plug): reported again, once.
        Assert.Equal(0, Host.Xenstore.Remove($"/local/domain/0/backend/vdispl/{u}/0"));
        Assert.Equal(0, Host.Xenstore.Remove($"/local/domain/{u}/device/vdispl/0"));
        Host.AddDevice(DomU, Dom0, "vdispl", 0);
        await log.WaitUntilAsync(l => l.Count(x => x == $"{u}/0") == 2, "device 0 again after its re-plug");

        await stop.CancelAsync();
        await watching.WaitAsync(EventLog.Patience);
        Assert.Equal(4, log.Items.Count);
        Assert.DoesNotContain(log.Items, x => x.Contains("vkbd", StringComparison.Ordinal));
        Host.DestroyGuest(other);
    }
}
