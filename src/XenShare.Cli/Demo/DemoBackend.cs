using DisplifAbi = XenShare.Abi.Displif;
using XenShare.Api;
using XenShare.Displif;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Cli.Demo;

/// <summary>
/// The dom0 side of the demo: the library's <see cref="DisplifBackend"/> serving the vdispl device of domU,
/// with the emulated host's display as its sink: a <see cref="ScanoutSink"/> (zero copy: every framebuffer's
/// dma-buf imported into the scan-out engine, each present latched and scanned out in place) or, with
/// <c>--copy</c>, a <see cref="GrantCopySink"/>. Frontend buffers are exported with GNTDEV_DMA_FLAG_WC (one
/// contiguous segment for the engine); with be-alloc the buffers come from <see cref="ContiguousHeapAllocator"/>.
/// Frame pacing is off (<see cref="DisplifBackendOptions.FrameInterval"/> zero): the flip event is sent as soon
/// as the frame was shown.
/// </summary>
internal sealed class DemoBackend : IAsyncDisposable
{
    private readonly XenstoreClient _client;
    private readonly ScanoutSink? _scanout;
    private ContiguousHeapAllocator? _allocator;
    private readonly GrantCopySink? _copy;
    private readonly Dictionary<byte, int> _requests = [];
    private readonly List<XenbusState> _states = [];
    private readonly CancellationTokenSource _stop = new();
    private DisplifBackend? _backend;
    private Task _run = Task.CompletedTask;

    private DemoBackend(DemoOptions options, IGuestProcess process, DemoRecorder recorder)
    {
        Options = options;
        if (options.Copy) _copy = new GrantCopySink(process, checked((int)options.FrameBytes), recorder.OnCopied);
        else _scanout = new ScanoutSink(process) { Presented = recorder.OnScanout };
        _client = XenstoreClient.OpenXenbus(process);
    }

    /// <summary>The options of the run.</summary>
    public DemoOptions Options { get; }

    /// <summary>The zero-copy sink (null with --copy).</summary>
    public ScanoutSink? Scanout => _scanout;

    /// <summary>The copying sink (null without --copy).</summary>
    public GrantCopySink? Copy => _copy;

    /// <summary>The library's backend.</summary>
    public DisplifBackend Backend => _backend ?? throw new InvalidOperationException("not started");

    /// <summary>The first protocol error or sink failure the backend reported, or null.</summary>
    public Exception? Fault { get; private set; }

    /// <summary>Requests answered with status 0, by displif operation.</summary>
    public IReadOnlyDictionary<byte, int> Requests
    {
        get { lock (_requests) return new Dictionary<byte, int>(_requests); }
    }

    /// <summary>Requests answered with an error status.</summary>
    public int FailedRequests { get; private set; }

    /// <summary>Opens the backend end of <c>vdispl/&lt;deviceId&gt;</c> of <paramref name="frontend"/> and
    /// starts serving it (the xenbus walk to InitWait, then Connected when the frontend comes).</summary>
    public static async Task<DemoBackend> StartAsync(DemoOptions options, IGuestProcess process, DomainId self, DomainId frontend, int deviceId,
        DemoRecorder recorder, CancellationToken cancellationToken)
    {
        var demo = new DemoBackend(options, process, recorder);
        try
        {
            var backendOptions = new DisplifBackendOptions
            {
                FrameInterval = TimeSpan.Zero,
                ExportBacking = DmaBufBacking.WriteCombine,
                MaxBufferPages = Math.Max(DisplifBackendOptions.DefaultMaxBufferPages, options.PagesPerBuffer),
                Allocator = demo._allocator = options.BackendAllocated ? new ContiguousHeapAllocator(process, self) : null,
            };
            IDisplaySink sink = (IDisplaySink?)demo._scanout ?? demo._copy!;
            demo._backend = await DisplifBackend.OpenAsync(demo._client, process, self, frontend, deviceId, sink, backendOptions, cancellationToken)
                .ConfigureAwait(false);
            demo._backend.RequestServed += demo.OnRequest;
            demo._backend.ConnectionChanged += demo.OnConnectionChanged;
            demo._run = demo._backend.RunAsync(demo._stop.Token);
            return demo;
        }
        catch
        {
            await demo.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private void OnRequest(object? sender, DisplifRequestEventArgs e)
    {
        if (e.Status != 0)
        {
            FailedRequests++;
            return;
        }
        lock (_requests) _requests[e.Operation] = _requests.GetValueOrDefault(e.Operation) + 1;
    }

    /// <summary>The xenbus states the backend switched to, in order ("InitWait, Connected, ...").</summary>
    public string StateSummary()
    {
        lock (_states) return string.Join(", ", _states);
    }

    private void OnConnectionChanged(object? sender, DisplifConnectionEventArgs e)
    {
        if (e.Kind == DisplifConnectionChange.StateSwitched)
            lock (_states) _states.Add(e.State);
        if (e.Kind is DisplifConnectionChange.Faulted or DisplifConnectionChange.SinkFailed && Fault is null) Fault = e.Error;
    }

    /// <summary>The requests as text: "DBUF_CREATE 2, FB_ATTACH 2, ...".</summary>
    public string RequestSummary()
    {
        var counts = Requests;
        (byte Op, string Name)[] order =
        [
            (DisplifAbi.XENDISPL_OP_DBUF_CREATE, "DBUF_CREATE"), (DisplifAbi.XENDISPL_OP_FB_ATTACH, "FB_ATTACH"),
            (DisplifAbi.XENDISPL_OP_SET_CONFIG, "SET_CONFIG"), (DisplifAbi.XENDISPL_OP_PG_FLIP, "PG_FLIP"),
            (DisplifAbi.XENDISPL_OP_FB_DETACH, "FB_DETACH"), (DisplifAbi.XENDISPL_OP_DBUF_DESTROY, "DBUF_DESTROY"),
        ];
        return string.Join(", ", order.Where(x => counts.ContainsKey(x.Op)).Select(x => $"{x.Name} {counts[x.Op]}"));
    }

    /// <summary>Stops the run (a connected frontend is torn down, Closed written) and frees the backend, the
    /// sink and the xenstore connection.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _run.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        catch (Exception e)
        {
            Fault ??= e;   // reported by the scene; the teardown goes on
        }
        if (_backend is not null) await _backend.DisposeAsync().ConfigureAwait(false);
        _scanout?.Dispose();
        _copy?.Dispose();
        _allocator?.Dispose();
        await _client.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
    }
}
