using System.Globalization;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Tests.Emulation;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Tests.Xenbus;

/// <summary>The xenbus device helper (<see cref="XenbusBackendDevice"/>, <see cref="XenbusFrontendDevice"/>) on
/// the emulator: dom0 runs the backend, the domU the frontend, each over its own <c>/dev/xen/xenbus</c>
/// connection, for a device whose XB01 directories the host writes as <c>xl</c> does (XB02, XB03). After
/// every test EmulatorTest checks that no fd, grant, mapping, port or xenstore connection leaked.</summary>
public sealed class XenbusDeviceHelperTests : EmulatorTest
{
    private const string Type = "xenshare-test";
    private static readonly TimeSpan Patience = EventLog.Patience;

    private static bool IsOce(Exception e) => e is OperationCanceledException;

    [Fact]
    public void XB02_StatesAreTheValuesOfXenbusH_AndTheAbiCatalogChecksThem()
    {
        var expected = new (XenbusState State, string CName, int Value)[]
        {
            (XenbusState.Unknown, "XenbusStateUnknown", 0), (XenbusState.Initialising, "XenbusStateInitialising", 1),
            (XenbusState.InitWait, "XenbusStateInitWait", 2), (XenbusState.Initialised, "XenbusStateInitialised", 3),
            (XenbusState.Connected, "XenbusStateConnected", 4), (XenbusState.Closing, "XenbusStateClosing", 5),
            (XenbusState.Closed, "XenbusStateClosed", 6), (XenbusState.Reconfiguring, "XenbusStateReconfiguring", 7),
            (XenbusState.Reconfigured, "XenbusStateReconfigured", 8),
        };
        Assert.Equal(expected.Length, Enum.GetValues<XenbusState>().Length);
        foreach (var (state, cName, value) in expected)
        {
            Assert.Equal(value, (int)state);
            var constant = AbiCatalog.FindConstant(cName);
            Assert.NotNull(constant);                          // compared with xen/io/xenbus.h by AbiHeaderTests
            Assert.Equal(AbiCatalog.XenbusHeader, constant.Header);
            Assert.Equal(value, constant.Value);
        }
    }

    [Theory]
    [InlineData("4", XenbusState.Connected)]
    [InlineData(" 2\n", XenbusState.InitWait)]
    [InlineData("8", XenbusState.Reconfigured)]
    [InlineData("9", XenbusState.Unknown)]
    [InlineData("-1", XenbusState.Unknown)]
    [InlineData("banana", XenbusState.Unknown)]
    [InlineData("", XenbusState.Unknown)]
    [InlineData("99999999999999999999", XenbusState.Unknown)]
    [InlineData(null, XenbusState.Unknown)]
    public void XB02_StateNodeText_ParsesAsLinuxReadsIt_GarbageIsUnknown(string? text, XenbusState expected) =>
        Assert.Equal(expected, XenbusNodes.Parse(text));

    [Fact]
    public async Task XB02_Open_ReadsTheXB01Paths_AndAMissingDeviceIsENOENT()
    {
        var (fePath, bePath) = Host.AddDevice(DomU, Dom0, Type, 3);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 3);
        await using var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 3);
        Assert.Equal(bePath, backend.BackendPath);
        Assert.Equal(fePath, backend.FrontendPath);
        Assert.Equal(fePath, frontend.FrontendPath);
        Assert.Equal(bePath, frontend.BackendPath);
        Assert.Equal(Dom0.Id, frontend.BackendId);
        Assert.Equal($"/local/domain/{DomU.Id.Value}/device/{Type}/3", XenbusFrontendDevice.PathOf(DomU.Id, Type, 3));
        Assert.Equal($"/local/domain/0/backend/{Type}/{DomU.Id.Value}/3", XenbusBackendDevice.PathOf(Dom0.Id, DomU.Id, Type, 3));
        Assert.Equal(XenbusState.Initialising, await backend.ReadStateAsync());
        Assert.Equal(XenbusState.Initialising, await backend.ReadFrontendStateAsync());
        Assert.True(await backend.ReadOnlineAsync());
        var missing = await Assert.ThrowsAsync<XenstoreException>(() => XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 4));
        Assert.Equal(Errno.ENOENT, missing.Errno);
        Assert.Throws<ArgumentException>(() => XenbusFrontendDevice.PathOf(DomU.Id, "a/b", 0));
        // A frontend cannot write the backend's state: the daemon's EACCES surfaces with its errno.
        var denied = await Assert.ThrowsAsync<XenstoreException>(() => frontend.Client.WriteAsync(bePath + "/state", "4"));
        Assert.Equal(Errno.EACCES, denied.Errno);
    }

    [Fact]
    public async Task XB02_FullHandshake_BothSidesReachConnected_TheBackendMapsAndBindsWhatTheFrontendPublished()
    {
        var (fePath, bePath) = Host.AddDevice(DomU, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        using var handler = new TestBackend(P0);
        using var cts = new CancellationTokenSource(Patience);
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0, cts.Token);
        var run = Task.Run(() => backend.RunAsync(handler, cts.Token));

        await using (var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0, cts.Token))
        using (var ring = new TestRing(PU, Dom0.Id, "first"))
        {
            // The frontend also watches the backend's states as a stream, until InitWait follows Connected.
            var seen = new List<XenbusState>();
            var watching = Task.Run(async () =>
            {
                await foreach (var st in frontend.WatchBackendStateAsync(cts.Token))
                {
                    seen.Add(st);
                    if (st == XenbusState.InitWait && seen.Contains(XenbusState.Connected)) return;
                }
            });
            await frontend.ConnectAsync(ring.PublishAsync, cts.Token);
            Assert.Equal(XenbusState.Connected, frontend.State);
            Assert.Equal("4", Host.Xenstore.Read(fePath + "/state"));
            Assert.Equal(XenbusState.Connected, await frontend.ReadBackendStateAsync(cts.Token));
            Assert.Equal("4", Host.Xenstore.Read(bePath + "/state"));
            Assert.Equal("1", Host.Xenstore.Read(bePath + "/feature-test"));   // published before InitWait
            Assert.True(backend.IsConnected);
            Assert.Equal(["publish", "mapped first", "connect first"], handler.Log.Items.Where(i => !i.StartsWith("state", StringComparison.Ordinal)));
            Assert.Equal(XenbusState.Connected, await backend.WaitForFrontendStateAsync(s => s == XenbusState.Connected, cts.Token));

            await frontend.CloseAsync(cts.Token);
            Assert.Equal(XenbusState.Closed, frontend.State);
            await handler.Log.WaitForCountAsync("disconnect", 1);
            await frontend.WaitForBackendStateAsync(s => s == XenbusState.InitWait, cts.Token);
            await watching.WaitAsync(Patience);     // the stream saw Connected, then InitWait
            Assert.Equal(XenbusState.InitWait, seen[^1]);
            Assert.All(seen.Zip(seen.Skip(1)), pair => Assert.NotEqual(pair.First, pair.Second));   // changes only
        }
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        Assert.Equal((1, 1, 0), (handler.Connects, handler.Disconnects, handler.Violations));
        Assert.Equal("6", Host.Xenstore.Read(bePath + "/state"));   // a stopped backend says Closed
    }

    [Fact]
    public async Task XB02_TheBackendWritesExactly_Initialising_InitWait_Connected_InitWait_ThenClosedWhenOffline()
    {
        var (_, bePath) = Host.AddDevice(DomU, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        var handler = new TestBackend();
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0);
        using var cts = new CancellationTokenSource(Patience);
        var run = Task.Run(() => backend.RunAsync(handler, cts.Token));

        await using (var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0))
        {
            await frontend.ConnectAsync((d, ct) => d.Client.WriteAsync(d.FrontendPath + "/instance", "one", ct), cts.Token);
            await frontend.CloseAsync(cts.Token);
        }
        await handler.Log.WaitUntilAsync(l => l.Count > 0 && l[^1] == "state 2" && l.Contains("disconnect PeerClosed"), "InitWait after the close");
        Assert.Equal(0, Host.Xenstore.Write(bePath + "/online", "0"));   // the toolstack removes the device
        await run.WaitAsync(Patience);                                   // the run ends by itself
        Assert.Equal("1,2,4,2,6", handler.StateSequence());
        Assert.Equal("6", Host.Xenstore.Read(bePath + "/state"));
        Assert.Equal((1, 1), (handler.Connects, handler.Disconnects));
    }

    [Fact]
    public async Task XB03_FrontendClosing_BackendDisconnectsOnce_BackToInitWait_AndAReloadedFrontendConnectsAgain()
    {
        var (fePath, bePath) = Host.AddDevice(DomU, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        using var handler = new TestBackend(P0);
        using var cts = new CancellationTokenSource(Patience);
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0);
        var run = Task.Run(() => backend.RunAsync(handler, cts.Token));

        await using (var xsU = XenstoreClient.OpenXenbus(PU))
        await using (var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0))
        using (var ring = new TestRing(PU, Dom0.Id, "driver-1"))
        {
            await frontend.ConnectAsync(ring.PublishAsync, cts.Token);
            Assert.Equal(0, handler.Disconnects);
            Assert.Equal(0, Host.Xenstore.Write(fePath + "/unrelated", "x"));   // noise in the frontend dir: no disconnect
            await frontend.CloseAsync(cts.Token);
            await handler.Log.WaitForCountAsync("disconnect", 1);
        }
        Assert.Equal("disconnect PeerClosed", handler.Log.Items.Single(i => i.StartsWith("disconnect", StringComparison.Ordinal)));
        await handler.Log.WaitUntilAsync(l => l[^1] == "state 2", "InitWait after the disconnect");
        Assert.Equal("2", Host.Xenstore.Read(bePath + "/state"));
        Assert.Equal(1, handler.Disconnects);

        // The driver reloads: a new process in the domU, a new xenstore connection, a new instance.
        using (var reloaded = DomU.StartProcess())
        {
            await using var xsU2 = XenstoreClient.OpenXenbus(reloaded);
            await using var frontend2 = await XenbusFrontendDevice.OpenAsync(xsU2, DomU.Id, Type, 0);
            using var ring2 = new TestRing(reloaded, Dom0.Id, "driver-2");
            await frontend2.ConnectAsync(ring2.PublishAsync, cts.Token);
            Assert.Contains("connect driver-2", handler.Log.Items);
            Assert.Equal(XenbusState.Connected, await frontend2.ReadBackendStateAsync());
            await frontend2.CloseAsync(cts.Token);
            await handler.Log.WaitForCountAsync("disconnect", 2);
        }
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        Assert.Equal("1,2,4,2,4,2,6", handler.StateSequence());
        Assert.Equal((2, 2, 0), (handler.Connects, handler.Disconnects, handler.Violations));
    }

    [Fact]
    public async Task XB03_FrontendDomainDiesMidHandshake_BackendTearsDownOnce_NothingLeaks()
    {
        var guest = Host.CreateGuest(new DomainConfig { RamPages = 512, UnpopulatedPages = 512 });
        var gp = guest.StartProcess();
        var (_, bePath) = Host.AddDevice(guest, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var handler = new TestBackend(P0) { AfterMap = ct => gate.Task.WaitAsync(ct) };
        using var cts = new CancellationTokenSource(Patience);
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, guest.Id, Type, 0);
        var run = Task.Run(() => backend.RunAsync(handler, cts.Token));

        var xsG = XenstoreClient.OpenXenbus(gp);
        var frontend = await XenbusFrontendDevice.OpenAsync(xsG, guest.Id, Type, 0);
        var ring = new TestRing(gp, Dom0.Id, "doomed");
        using var frontendStop = new CancellationTokenSource();
        var connecting = frontend.ConnectAsync(ring.PublishAsync, frontendStop.Token);
        await handler.Log.WaitForCountAsync("mapped", 1);              // the backend maps and binds: mid-handshake
        await frontendStop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => connecting);

        // The frontend's processes end without closing anything, then the toolstack destroys the domain.
        await xsG.DisposeAsync();
        await frontend.DisposeAsync();                                 // its connection is gone: writes nothing
        ring.Dispose();
        gp.Dispose();
        Host.DestroyGuest(guest);
        Assert.Equal(1, Xen.ZombieCount);                              // dom0 still maps its page

        gate.SetResult();                                               // the backend's connect completes late
        await handler.Log.WaitForCountAsync("disconnect", 1);
        string reason = handler.Log.Items.Single(i => i.StartsWith("disconnect", StringComparison.Ordinal));
        Assert.True(reason is "disconnect PeerVanished" or "disconnect PeerDomainDied", reason);
        await handler.Log.WaitUntilAsync(l => l[^1] == "state 2", "InitWait for the next frontend");
        Assert.Equal(0, Xen.ZombieCount);                              // unmapped: the domain is gone

        Assert.Equal(0, Host.Xenstore.Remove(bePath));                  // the toolstack removes the backend dir: the run ends
        await run.WaitAsync(Patience);
        Assert.Equal((1, 1, 0), (handler.Connects, handler.Disconnects, handler.Violations));
    }

    [Fact]
    public async Task XB03_FrontendDirectoryRemovedWhileConnected_PeerVanished_ThenBackendDirectoryRemoved_RunEnds()
    {
        var (fePath, bePath) = Host.AddDevice(DomU, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        using var handler = new TestBackend(P0);
        using var cts = new CancellationTokenSource(Patience);
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0);
        var run = Task.Run(() => backend.RunAsync(handler, cts.Token));
        await using (var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0))
        using (var ring = new TestRing(PU, Dom0.Id, "here"))
        {
            await frontend.ConnectAsync(ring.PublishAsync, cts.Token);
            Assert.Equal(0, Host.Xenstore.Remove(fePath));
            await handler.Log.WaitForCountAsync("disconnect", 1);
            Assert.Contains("disconnect PeerVanished", handler.Log.Items);
            // Closing a frontend whose directory is gone writes nothing (and does not recreate it).
            await frontend.CloseAsync(cts.Token);
            Assert.Null(Host.Xenstore.Read(fePath + "/state"));
        }
        await handler.Log.WaitUntilAsync(l => l[^1] == "state 2", "InitWait");
        Assert.Equal(0, Host.Xenstore.Remove(bePath));
        await run.WaitAsync(Patience);
        Assert.Null(Host.Xenstore.Read(bePath + "/state"));            // never recreated by a late write
        Assert.Equal((1, 1, 0), (handler.Connects, handler.Disconnects, handler.Violations));
    }

    [Fact]
    public async Task XB02_OnlineZeroWhileConnected_BackendAsksTheFrontendToClose_DisconnectsOnce_ThenClosed()
    {
        var (_, bePath) = Host.AddDevice(DomU, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        using var handler = new TestBackend(P0);
        using var cts = new CancellationTokenSource(Patience);
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0);
        var run = Task.Run(() => backend.RunAsync(handler, cts.Token));
        await using (var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0))
        using (var ring = new TestRing(PU, Dom0.Id, "x"))
        {
            await frontend.ConnectAsync(ring.PublishAsync, cts.Token);
            Assert.Equal(0, Host.Xenstore.Write(bePath + "/online", "0"));
            Assert.Equal(XenbusState.Closing, await frontend.WaitForBackendStateAsync(s => s != XenbusState.Connected, cts.Token));
            Assert.Equal(0, handler.Disconnects);                       // still mapped until the frontend lets go
            await frontend.CloseAsync(cts.Token);
        }
        await run.WaitAsync(Patience);
        Assert.Equal("1,2,4,5,6", handler.StateSequence());
        Assert.Equal((1, 1, 0), (handler.Connects, handler.Disconnects, handler.Violations));
    }

    [Fact]
    public async Task XB02_Cancellation_EndsEveryWait_AndDisconnectsAConnectedBackendOnce()
    {
        var (fePath, bePath) = Host.AddDevice(DomU, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);

        // A frontend whose backend never runs: cancelled while it waits for InitWait.
        await using (var lonely = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0))
        {
            using var soon = new CancellationTokenSource();
            var waiting = lonely.ConnectAsync((_, _) => throw new InvalidOperationException("never published"), soon.Token);
            await lonely.WaitForBackendStateAsync(s => s == XenbusState.Initialising).WaitAsync(Patience);
            // The frontend has written Initialising and now waits for InitWait (its requests go one at a time).
            Assert.True(SpinWait.SpinUntil(() => lonely.State == XenbusState.Initialising, Patience));
            await soon.CancelAsync();
            var e = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
            Assert.Equal(soon.Token, e.CancellationToken);
            Assert.Equal(XenbusState.Initialising, lonely.State);
            lonely.CloseTimeout = TimeSpan.FromSeconds(30);             // Initialising backend: closes at once
        }
        Assert.Equal("6", Host.Xenstore.Read(fePath + "/state"));
        Assert.Equal(0, Host.Xenstore.Write(fePath + "/state", "1"));   // the toolstack's state again

        // A backend without a frontend: cancelled in InitWait, never connected, writes Closed.
        var idle = new TestBackend();
        await using (var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0))
        {
            using var stop = new CancellationTokenSource();
            var run = Task.Run(() => backend.RunAsync(idle, stop.Token));
            await idle.Log.WaitUntilAsync(l => l.Contains("state 2"), "InitWait");
            using var waitStop = new CancellationTokenSource();
            var waitFrontend = backend.WaitForFrontendStateAsync(s => s == XenbusState.Connected, waitStop.Token);
            await waitStop.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waitFrontend);
            await stop.CancelAsync();
            var e = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
            Assert.Equal(stop.Token, e.CancellationToken);
            Assert.Equal((0, 0), (idle.Connects, idle.Disconnects));
            Assert.Equal("6", Host.Xenstore.Read(bePath + "/state"));
        }
        Assert.Equal(0, Host.Xenstore.Write(bePath + "/state", "1"));

        // A connected backend stopped by disposal: disconnect (Stopped) once; the frontend sees Closed.
        using var handler = new TestBackend(P0);
        var backend2 = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0);
        var run2 = Task.Run(() => backend2.RunAsync(handler));
        await using (var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0))
        using (var ring = new TestRing(PU, Dom0.Id, "y"))
        {
            using var t = new CancellationTokenSource(Patience);
            await frontend.ConnectAsync(ring.PublishAsync, t.Token);
            await backend2.DisposeAsync();
            await Assert.ThrowsAsync<ObjectDisposedException>(() => run2);
            Assert.Equal(["disconnect Stopped"], handler.Log.Items.Where(i => i.StartsWith("disconnect", StringComparison.Ordinal)));
            Assert.Equal(XenbusState.Closed, await frontend.WaitForBackendStateAsync(s => s != XenbusState.Connected, t.Token));
            await frontend.CloseAsync(t.Token);
        }
        Assert.Equal((1, 1, 0), (handler.Connects, handler.Disconnects, handler.Violations));
    }

    [Fact]
    public async Task XB03_BackendsXenstoreConnectionGoesAwayWhileConnected_RunFails_DisconnectRunsOnce()
    {
        Host.AddDevice(DomU, Dom0, Type, 0);
        var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        using var handler = new TestBackend(P0);
        using var cts = new CancellationTokenSource(Patience);
        await using (var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0))
        await using (var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0))
        using (var ring = new TestRing(PU, Dom0.Id, "z"))
        {
            var run = Task.Run(() => backend.RunAsync(handler, cts.Token));
            await frontend.ConnectAsync(ring.PublishAsync, cts.Token);
            await xs0.DisposeAsync();
            var failure = await Assert.ThrowsAnyAsync<Exception>(() => run);
            Assert.True(failure is ObjectDisposedException or IOException, failure.ToString());
            Assert.Equal(["disconnect Stopped"], handler.Log.Items.Where(i => i.StartsWith("disconnect", StringComparison.Ordinal)));
            frontend.CloseTimeout = TimeSpan.Zero;                      // nobody answers any more: dispose writes Closed anyway
        }
        Assert.Equal((1, 1, 0), (handler.Connects, handler.Disconnects, handler.Violations));
    }

    [Fact]
    public async Task XB03_HostileFrontend_GarbageStates_AndAFailedConnect_BackendSurvives_ThenAProperFrontendConnects()
    {
        var (fePath, bePath) = Host.AddDevice(DomU, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        await using var xsU = XenstoreClient.OpenXenbus(PU);
        using var handler = new TestBackend(P0);
        using var cts = new CancellationTokenSource(Patience);
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0);
        var run = Task.Run(() => backend.RunAsync(handler, cts.Token));
        await handler.Log.WaitUntilAsync(l => l.Contains("state 2"), "InitWait");

        // The frontend writes nonsense: nothing connects.
        foreach (string garbage in new[] { "banana", "99", "-1", "", "4x", "7", "0", "2" })
            await xsU.WriteAsync(fePath + "/state", garbage, cts.Token);
        // Then claims Initialised without publishing anything: the connect fails, the backend says Closing.
        await xsU.WriteAsync(fePath + "/state", "3", cts.Token);
        await handler.Log.WaitForCountAsync("disconnect", 1);
        Assert.Contains("disconnect ConnectFailed", handler.Log.Items);
        Assert.IsType<XenstoreException>(backend.LastConnectFailure);
        Assert.Equal(Errno.ENOENT, ((XenstoreException)backend.LastConnectFailure!).Errno);
        await handler.Log.WaitUntilAsync(l => l[^1] == "state 5", "Closing after the failed connect");
        // It keeps claiming Initialised: the backend waits; a Closed frontend gets InitWait again.
        await xsU.WriteAsync(fePath + "/state", "4", cts.Token);
        await xsU.WriteAsync(fePath + "/state", "6", cts.Token);
        await handler.Log.WaitUntilAsync(l => l[^1] == "state 2", "InitWait after the frontend closed");

        await using (var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0))
        using (var ring = new TestRing(PU, Dom0.Id, "proper"))
        {
            await frontend.ConnectAsync(ring.PublishAsync, cts.Token);
            Assert.Contains("connect proper", handler.Log.Items);
            await frontend.CloseAsync(cts.Token);
        }
        await handler.Log.WaitForCountAsync("disconnect", 2);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);
        Assert.Equal((2, 2, 0), (handler.Connects, handler.Disconnects, handler.Violations));
        Assert.Equal("1,2,5,2,4,2,6", handler.StateSequence());
        _ = bePath;
    }

    [Fact]
    public async Task XB03_Race_200ConnectDisconnectCycles_WithDriverReloads_DisconnectRunsOncePerConnect()
    {
        const int Cycles = 200;
        var (_, bePath) = Host.AddDevice(DomU, Dom0, Type, 0);
        await using var xs0 = XenstoreClient.OpenXenbus(P0);
        using var handler = new TestBackend(P0);
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(3));
        await using var backend = await XenbusBackendDevice.OpenAsync(xs0, Dom0.Id, DomU.Id, Type, 0);
        var run = Task.Run(() => backend.RunAsync(handler, cts.Token));

        var xsU = XenstoreClient.OpenXenbus(PU);
        TestRing? abandoned = null;
        XenbusFrontendDevice? abandonedDevice = null;
        try
        {
            for (int i = 0; i < Cycles; i++)
            {
                if (i % 50 == 49)
                {
                    await xsU.DisposeAsync();                           // now and then a new connection, too
                    xsU = XenstoreClient.OpenXenbus(PU);
                }
                string name = "cycle-" + i.ToString(CultureInfo.InvariantCulture);
                var frontend = await XenbusFrontendDevice.OpenAsync(xsU, DomU.Id, Type, 0, cts.Token);
                var ring = new TestRing(PU, Dom0.Id, name);
                await frontend.ConnectAsync(ring.PublishAsync, cts.Token);
                // The backend connected to this instance, so it has let go of an abandoned one.
                abandoned?.Dispose();
                abandoned = null;
                abandonedDevice = null;
                if (i % 4 == 3 && i != Cycles - 1)
                {
                    // A frontend that dies without closing (its domain lives): the next instance's
                    // Initialising makes the backend disconnect.
                    abandoned = ring;
                    abandonedDevice = frontend;
                    continue;
                }
                await frontend.CloseAsync(cts.Token);
                await frontend.DisposeAsync();
                ring.Dispose();
            }
        }
        finally
        {
            abandoned?.Dispose();
            _ = abandonedDevice;
            await xsU.DisposeAsync();
        }
        await handler.Log.WaitForCountAsync("disconnect", Cycles);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => run);

        var connects = handler.Log.Items.Where(i => i.StartsWith("connect", StringComparison.Ordinal)).ToList();
        Assert.Equal(Enumerable.Range(0, Cycles).Select(i => "connect cycle-" + i.ToString(CultureInfo.InvariantCulture)), connects);
        Assert.Equal((Cycles, Cycles, 0), (handler.Connects, handler.Disconnects, handler.Violations));
        Assert.All(handler.Log.Items.Where(i => i.StartsWith("disconnect", StringComparison.Ordinal)), d => Assert.Equal("disconnect PeerClosed", d));
        Assert.Equal("6", Host.Xenstore.Read(bePath + "/state"));
    }
}
