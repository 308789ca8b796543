using System.Globalization;
using System.Threading.Channels;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Conformance;

/// <summary>
/// Two-domain scenarios of the xenbus device helper (XB02, XB03): dom0's half is a backend
/// (<see cref="XenbusBackendDevice"/>), the domU's half a frontend (<see cref="XenbusFrontendDevice"/>), for a
/// device <c>xenshare-test/&lt;id&gt;</c> whose XB01 directories dom0's half writes itself, as <c>xl</c> would
/// (a fresh id, so it works in a real dom0 where the toolstack wrote nothing for it). Each half opens its
/// own xenstore connection over <c>/dev/xen/xenbus</c>; they meet through the context's mailbox. Run like
/// <see cref="TwoDomainScenarios.All"/>: both halves at once, on the emulator or in dom0 and a domU.
/// </summary>
public static class XenbusScenarios
{
    /// <summary>The device type of the scenarios (no driver anywhere knows it).</summary>
    public const string DeviceType = "xenshare-test";

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(100);

    /// <summary>The scenarios, in the order both sides run them.</summary>
    public static IReadOnlyList<TwoDomainScenarios.Scenario> All { get; } =
    [
        new("XB02+XB03", "a dom0 backend and a domU frontend walk to Connected exchanging a ref through xenstore; the frontend closes, the backend disconnects once and offers InitWait, a second frontend instance connects; both tear down", HandshakeDomU, HandshakeDom0),
    ];

    private static readonly string[] BackendNodes = ["", "/frontend", "/frontend-id", "/online", "/state"];
    private static readonly string[] FrontendNodes = ["", "/backend", "/backend-id", "/state"];

    private static string Id(int id) => id.ToString(CultureInfo.InvariantCulture);

    private static string Home(DomainId d) => "/local/domain/" + d.Value.ToString(CultureInfo.InvariantCulture);

    // ------------------------------------------------------------------ domU: two frontend instances

    private static async Task HandshakeDomU(TwoDomainContext c)
    {
        var mb = c.Mailbox("XB02");
        try
        {
            int id = int.Parse(await mb.WaitForAsync("device"), CultureInfo.InvariantCulture);
            await using var xs = XenstoreClient.OpenXenbus(c.Process);
            using var cts = new CancellationTokenSource(Patience);
            foreach (int instance in new[] { 1, 2 })
            {
                // A driver (re)load: a new frontend instance on the same device.
                await using var frontend = await XenbusFrontendDevice.OpenAsync(xs, c.Self, DeviceType, id, cts.Token);
                Check.Equal(c.Peer, frontend.BackendId, "backend-id");
                Check.Equal(XenbusBackendDevice.PathOf(c.Peer, c.Self, DeviceType, id), frontend.BackendPath, "the backend path (XB01)");
                string value = Id(1001 * instance);
                await frontend.ConnectAsync(async (device, ct) =>
                    await device.Client.WriteAsync(device.FrontendPath + "/ring-ref", value, ct), cts.Token);
                Check.Equal(XenbusState.Connected, await frontend.ReadStateAsync(cts.Token), $"instance {instance}: the frontend's state node");
                Check.Equal(XenbusState.Connected, await frontend.ReadBackendStateAsync(cts.Token), $"instance {instance}: the backend's state node");
                await frontend.CloseAsync(cts.Token);
                Check.Equal(XenbusState.Closed, frontend.State, $"instance {instance}: closed");
                Check.Equal(XenbusState.InitWait, await frontend.ReadBackendStateAsync(cts.Token), $"instance {instance}: the backend is back in InitWait");
            }
            await mb.PostAsync("domu-done", "ok");
        }
        catch (Exception e)
        {
            await mb.PostAsync("domu-done", "FAIL " + e.GetType().Name + ": " + e.Message);
            throw;
        }
        string dom0 = await mb.WaitForAsync("dom0-done");
        if (dom0 != "ok") throw new ConformanceException("dom0: " + dom0);
    }

    // ------------------------------------------------------------------ dom0: toolstack and backend

    private static async Task HandshakeDom0(TwoDomainContext c)
    {
        var mb = c.Mailbox("XB02");
        await using var xs = XenstoreClient.OpenXenbus(c.Process);
        using var cts = new CancellationTokenSource(Patience);
        string? fePath = null, bePath = null;
        try
        {
            int id = await FreshIdAsync(xs, c, cts.Token);
            (fePath, bePath) = await AddDeviceAsync(xs, c.Peer, c.Self, id, cts.Token);
            var handler = new RecordingBackend();
            await using (var backend = await XenbusBackendDevice.OpenAsync(xs, c.Self, c.Peer, DeviceType, id, cts.Token))
            {
                Check.Equal(fePath, backend.FrontendPath, "the frontend path (XB01)");
                Task run = backend.RunAsync(handler, cts.Token);
                await mb.PostAsync("device", Id(id));

                Check.Equal("connect 1001", await handler.NextAsync(cts.Token), "first connect: the ref the first frontend published");
                Check.Equal("disconnect PeerClosed", await handler.NextAsync(cts.Token), "first frontend closed (XB03)");
                Check.Equal("connect 2002", await handler.NextAsync(cts.Token), "second connect (driver reload)");
                Check.Equal("disconnect PeerClosed", await handler.NextAsync(cts.Token), "second frontend closed");
                string domu = await mb.WaitForAsync("domu-done");
                if (domu != "ok") throw new ConformanceException("domU: " + domu);

                // The toolstack removes the device: the run ends without writing anything more.
                await RemoveDeviceAsync(xs, fePath, bePath, cts.Token);
                fePath = bePath = null;
                await run.WaitAsync(cts.Token);
                Check.Equal("1,2,4,2,4,2", string.Join(",", handler.States.Select(s => (int)s)), "the states the backend wrote (XB02)");
                Check.True(!handler.TryNext(out string? extra), "nothing after the last disconnect: " + extra);
            }
            await mb.PostAsync("dom0-done", "ok");
        }
        catch (Exception e)
        {
            await mb.PostAsync("dom0-done", "FAIL " + e.GetType().Name + ": " + e.Message);
            throw;
        }
        finally
        {
            if (fePath is not null && bePath is not null)
            {
                try { await RemoveDeviceAsync(xs, fePath, bePath, CancellationToken.None); }
                catch (Exception e) when (e is XenstoreException or IOException) { /* the scenario already failed */ }
            }
        }
    }

    /// <summary>An id no device of the type uses yet, on either side.</summary>
    private static async Task<int> FreshIdAsync(XenstoreClient xs, TwoDomainContext c, CancellationToken ct)
    {
        int next = 0;
        foreach (string dir in new[] { $"{Home(c.Peer)}/device/{DeviceType}", $"{Home(c.Self)}/backend/{DeviceType}/{c.Peer.Value}" })
        {
            IReadOnlyList<string> names;
            try { names = await xs.DirectoryAsync(dir, ct); }
            catch (XenstoreException e) when (e.Errno == Abi.Errno.ENOENT) { continue; }
            foreach (string name in names)
                if (int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out int used) && used >= next) next = used + 1;
        }
        return next;
    }

    /// <summary>XB01 as <c>xl</c> writes it: the backend directory (owned by the backend, readable by the
    /// frontend) and the frontend directory (owned by the frontend, readable by the backend).</summary>
    private static async Task<(string Frontend, string Backend)> AddDeviceAsync(
        XenstoreClient xs, DomainId frontend, DomainId backend, int id, CancellationToken ct)
    {
        string fePath = XenbusFrontendDevice.PathOf(frontend, DeviceType, id);
        string bePath = XenbusBackendDevice.PathOf(backend, frontend, DeviceType, id);
        string fe = frontend.Value.ToString(CultureInfo.InvariantCulture), be = backend.Value.ToString(CultureInfo.InvariantCulture);
        await xs.TransactionAsync(async (tx, t) =>
        {
            await tx.WriteAsync(bePath + "/frontend", fePath, t);
            await tx.WriteAsync(bePath + "/frontend-id", fe, t);
            await tx.WriteAsync(bePath + "/online", "1", t);
            await tx.WriteAsync(bePath + "/state", "1", t);
            await tx.WriteAsync(fePath + "/backend", bePath, t);
            await tx.WriteAsync(fePath + "/backend-id", be, t);
            await tx.WriteAsync(fePath + "/state", "1", t);
            XenstorePermission[] bePerms = [new(backend, XenstoreAccess.None), new(frontend, XenstoreAccess.Read)];
            XenstorePermission[] fePerms = [new(frontend, XenstoreAccess.None), new(backend, XenstoreAccess.Read)];
            foreach (string node in BackendNodes)
                await tx.SetPermissionsAsync(bePath + node, bePerms, t);
            foreach (string node in FrontendNodes)
                await tx.SetPermissionsAsync(fePath + node, fePerms, t);
        }, ct);
        return (fePath, bePath);
    }

    private static async Task RemoveDeviceAsync(XenstoreClient xs, string fePath, string bePath, CancellationToken ct)
    {
        await xs.RemoveAsync(fePath, ct);
        await xs.RemoveAsync(bePath, ct);
        // The type directories this scenario created, when nothing else is in them.
        foreach (string dir in new[] { Parent(fePath), Parent(bePath), Parent(Parent(bePath)) })
        {
            try
            {
                if ((await xs.DirectoryAsync(dir, ct)).Count == 0) await xs.RemoveAsync(dir, ct);
            }
            catch (XenstoreException e) when (e.Errno == Abi.Errno.ENOENT) { }
        }
    }

    private static string Parent(string path) => path[..path.LastIndexOf('/')];

    /// <summary>A backend protocol that reads the frontend's <c>ring-ref</c> at connect and records every call.</summary>
    private sealed class RecordingBackend : IXenbusBackendHandler
    {
        private readonly Channel<string> _events = Channel.CreateUnbounded<string>();
        private readonly List<XenbusState> _states = [];

        public IReadOnlyList<XenbusState> States { get { lock (_states) return [.. _states]; } }

        public async Task ConnectAsync(XenbusBackendDevice device, CancellationToken cancellationToken)
        {
            string value = await device.Client.ReadStringAsync(device.FrontendPath + "/ring-ref", cancellationToken);
            _events.Writer.TryWrite("connect " + value);
        }

        public Task DisconnectAsync(XenbusBackendDevice device, XenbusDisconnectReason reason)
        {
            _events.Writer.TryWrite("disconnect " + reason);
            return Task.CompletedTask;
        }

        public void OnStateSwitched(XenbusBackendDevice device, XenbusState state)
        {
            lock (_states) _states.Add(state);
        }

        public async Task<string> NextAsync(CancellationToken ct) => await _events.Reader.ReadAsync(ct);

        public bool TryNext(out string? e) => _events.Reader.TryRead(out e);
    }
}
