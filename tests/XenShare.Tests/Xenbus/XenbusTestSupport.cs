using System.Globalization;
using XenShare.Api;
using XenShare.Xenbus;

namespace XenShare.Tests.Xenbus;

/// <summary>An append-only log that tests wait on (no sleeps: every append wakes the waiters).</summary>
internal sealed class EventLog
{
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private readonly List<string> _items = [];
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Add(string item)
    {
        TaskCompletionSource woken;
        lock (_items)
        {
            _items.Add(item);
            woken = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        woken.TrySetResult();
    }

    public IReadOnlyList<string> Items { get { lock (_items) return [.. _items]; } }

    public int Count(string prefix) => Items.Count(i => i.StartsWith(prefix, StringComparison.Ordinal));

    /// <summary>Waits (at most <see cref="Patience"/>) until <paramref name="condition"/> holds for the log.</summary>
    public async Task WaitUntilAsync(Func<IReadOnlyList<string>, bool> condition, string what)
    {
        using var timeout = new CancellationTokenSource(Patience);
        while (true)
        {
            Task next;
            lock (_items)
            {
                if (condition(_items)) return;
                next = _changed.Task;
            }
            try
            {
                await next.WaitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"timed out waiting for {what}; log: {string.Join(" | ", Items)}");
            }
        }
    }

    public Task WaitForCountAsync(string prefix, int count) =>
        WaitUntilAsync(items => items.Count(i => i.StartsWith(prefix, StringComparison.Ordinal)) >= count, $"{count} x '{prefix}'");
}

/// <summary>
/// A backend protocol for the tests: at connect it reads the frontend's <c>instance</c> node and, in ring
/// mode, maps the granted page named by <c>ring-ref</c> and binds <c>event-channel</c> (what a real backend
/// does); at disconnect it unmaps and unbinds. It logs every call and state and counts a disconnect
/// without a connect (or a second one) as a violation.
/// </summary>
internal sealed class TestBackend(IGuestProcess? ringProcess = null) : IXenbusBackendHandler, IDisposable
{
    private GrantDevice? _gntdev;
    private EventChannels? _evtchn;
    private GrantMapping? _map;
    private EventPort? _port;
    private int _live;

    public EventLog Log { get; } = new();

    public List<XenbusState> States { get; } = [];

    public int Connects;
    public int Disconnects;
    public int Violations;

    /// <summary>Runs inside ConnectAsync after the ring is mapped (a test holds the handshake there).</summary>
    public Func<CancellationToken, Task>? AfterMap { get; set; }

    public async Task PublishAsync(XenbusBackendDevice device, CancellationToken cancellationToken)
    {
        await device.Client.WriteAsync(device.BackendPath + "/feature-test", "1", cancellationToken);
        Log.Add("publish");
    }

    public async Task ConnectAsync(XenbusBackendDevice device, CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref _live, 1) != 0) Interlocked.Increment(ref Violations);
        Interlocked.Increment(ref Connects);
        // A missing node throws (XenstoreException ENOENT): a failed connect, as for a frontend that lies.
        string instance = await device.Client.ReadStringAsync(device.FrontendPath + "/instance", cancellationToken);
        if (ringProcess is not null)
        {
            uint gref = uint.Parse(await device.Client.ReadStringAsync(device.FrontendPath + "/ring-ref", cancellationToken), CultureInfo.InvariantCulture);
            uint port = uint.Parse(await device.Client.ReadStringAsync(device.FrontendPath + "/event-channel", cancellationToken), CultureInfo.InvariantCulture);
            _gntdev ??= GrantDevice.Open(ringProcess);
            _evtchn ??= EventChannels.Open(ringProcess);
            _map = _gntdev.Map(device.FrontendId, [new GrantRef(gref)]);
            _port = _evtchn.BindInterdomain(device.FrontendId, new EventPort(port));
            string seen = System.Text.Encoding.ASCII.GetString(_map.Memory.Span[..instance.Length]);
            if (seen != instance) throw new InvalidOperationException($"the ring shows '{seen}', not '{instance}'");
            Log.Add("mapped " + instance);
            if (AfterMap is not null) await AfterMap(cancellationToken);
        }
        Log.Add("connect " + instance);
    }

    public Task DisconnectAsync(XenbusBackendDevice device, XenbusDisconnectReason reason)
    {
        if (Interlocked.Exchange(ref _live, 0) != 1) Interlocked.Increment(ref Violations);
        Interlocked.Increment(ref Disconnects);
        _map?.Dispose();
        _map = null;
        if (_port is { } port) _evtchn!.Unbind(port);
        _port = null;
        Log.Add("disconnect " + reason);
        return Task.CompletedTask;
    }

    public void OnStateSwitched(XenbusBackendDevice device, XenbusState state)
    {
        lock (States) States.Add(state);
        Log.Add("state " + (int)state);
    }

    public string StateSequence()
    {
        lock (States) return string.Join(",", States.Select(s => (int)s));
    }

    public void Dispose()
    {
        _map?.Dispose();
        _evtchn?.Dispose();
        _gntdev?.Dispose();
    }
}

/// <summary>A frontend's rings for the tests: one page granted to the backend with the instance's name
/// at its start, and an unbound event channel; published into the frontend directory.</summary>
internal sealed class TestRing(IGuestProcess process, DomainId backend, string instance) : IDisposable
{
    private GrantSharer? _sharer;
    private SharedPages? _pages;
    private EventChannels? _evtchn;

    public async Task PublishAsync(XenbusFrontendDevice device, CancellationToken cancellationToken)
    {
        _sharer = GrantSharer.Open(process);
        _pages = _sharer.Share(backend, 1);
        System.Text.Encoding.ASCII.GetBytes(instance).CopyTo(_pages.Memory.Span);
        _evtchn = EventChannels.Open(process);
        EventPort port = _evtchn.BindUnbound(backend);
        await device.Client.WriteAsync(device.FrontendPath + "/ring-ref", _pages.Refs[0].Value.ToString(CultureInfo.InvariantCulture), cancellationToken);
        await device.Client.WriteAsync(device.FrontendPath + "/event-channel", port.Value.ToString(CultureInfo.InvariantCulture), cancellationToken);
        await device.Client.WriteAsync(device.FrontendPath + "/instance", instance, cancellationToken);
    }

    public void Dispose()
    {
        _pages?.Dispose();
        _sharer?.Dispose();
        _evtchn?.Dispose();
    }
}
