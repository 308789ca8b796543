using System.Collections.Concurrent;
using System.Globalization;
using XenShare.Displif;
using XenShare.Tests.Emulation;
using XenShare.Tests.Xenbus;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Tests.Displif;

/// <summary><see cref="DisplifServer"/>, the loop of `xenshare display-backend`: serves every vdispl device the
/// toolstack writes for dom0 (XB01) - here a frontend-allocated and a backend-allocated one of one guest, as the
/// real-Xen stage's display domU has them - and lets each go when the toolstack removes it.</summary>
public sealed class DisplifServerTests : EmulatorTest
{
    [Fact]
    public async Task DP03_DP05_XB03_Server_ServesEveryDeviceTheToolstackWrites_BothAllocations_AndLetsThemGo()
    {
        var log = new EventLog();
        var sinks = new ConcurrentBag<GntDevImportSink>();
        var ended = new ConcurrentQueue<(XenbusDeviceId Id, Exception? Error)>();
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        var serving = Task.Run(() => DisplifServer.ServeAsync(xs0, P0, Dom0.Id,
            id =>
            {
                var sink = new GntDevImportSink(P0, Dom0.Id);
                sink.FrameShown += (in DisplayFrame f) => log.Add(string.Create(CultureInfo.InvariantCulture, $"frame {id.Id} {f.Path}"));
                sinks.Add(sink);
                return sink;
            },
            new DisplifBackendOptions { FrameInterval = TimeSpan.FromMilliseconds(2) },
            (id, backend) => log.Add(string.Create(CultureInfo.InvariantCulture, $"started {id.Id}")),
            (id, e) =>
            {
                ended.Enqueue((id, e));
                log.Add(string.Create(CultureInfo.InvariantCulture, $"ended {id.Id}"));
            },
            stop.Token));
        // The toolstack writes two devices, as xl does for `vdispl = [ 'be-alloc=0,...', 'be-alloc=1,...' ]`.
        var paths = new List<(string Fe, string Be)>();
        for (int id = 0; id < 2; id++)
        {
            var (fe, be) = Host.AddDevice(DomU, Dom0, "vdispl", id);
            paths.Add((fe, be));
            Assert.Equal(0, Host.Xenstore.Write(fe + "/be-alloc", id == 1 ? "1" : "0"));
            Assert.Equal(0, Host.Xenstore.Write(fe + "/0/resolution", "320x200"));
            Assert.Equal(0, Host.Xenstore.Write(fe + "/0/unique-id", "conn" + id.ToString(CultureInfo.InvariantCulture)));
        }
        await log.WaitUntilAsync(l => l.Contains("started 0") && l.Contains("started 1"), "both devices served");

        await using (var xsU = XenstoreClient.OpenXenbus(PU))
        {
            for (int id = 0; id < 2; id++)
            {
                using var cts = new CancellationTokenSource(EventLog.Patience);
                var frontend = await DisplifFrontend.ConnectAsync(xsU, PU, DomU.Id, id, cancellationToken: cts.Token);
                await using (frontend)
                {
                    frontend.RequestTimeout = EventLog.Patience;
                    Assert.Equal(id == 1, frontend.BackendAllocates);
                    var buffer = id == 1 ? await frontend.CreateBackendBufferAsync(320, 200, 32) : await frontend.CreateBufferAsync(320, 200, 32);
                    buffer.Pixels.Fill((byte)(0x40 + id));
                    var fb = await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24);
                    await frontend.SetConfigAsync(0, fb);
                    await frontend.PageFlipAsync(0, fb);
                    await frontend.SetConfigAsync(0, null);
                    await frontend.DetachFramebufferAsync(fb);
                    await frontend.DestroyBufferAsync(buffer);
                    await frontend.CloseAsync();
                }
            }
        }
        Assert.True(log.Count("frame 0 ") >= 2 && log.Count("frame 1 ") >= 2, string.Join("; ", log.Items));

        // The guest went away: the toolstack removes both devices; their runs end, the server goes on.
        foreach (var (fe, be) in paths)
        {
            Assert.Equal(0, Host.Xenstore.Remove(be));
            Assert.Equal(0, Host.Xenstore.Remove(fe));
        }
        await log.WaitUntilAsync(l => l.Contains("ended 0") && l.Contains("ended 1"), "both runs ended");
        Assert.All(ended, e => Assert.Null(e.Error));
        // A re-plug: the device is written again and served again.
        var (fe2, be2) = Host.AddDevice(DomU, Dom0, "vdispl", 0);
        Assert.Equal(0, Host.Xenstore.Write(fe2 + "/be-alloc", "0"));
        await log.WaitUntilAsync(l => l.Count(x => x == "started 0") == 2, "device 0 served again after its re-plug");
        Assert.Equal(0, Host.Xenstore.Remove(be2));
        Assert.Equal(0, Host.Xenstore.Remove(fe2));
        await log.WaitUntilAsync(l => l.Count(x => x == "ended 0") == 2, "its second run ended");
        Assert.False(serving.IsCompleted);
        await stop.CancelAsync();
        await serving.WaitAsync(EventLog.Patience);
        foreach (var sink in sinks) sink.Dispose();
    }
}
