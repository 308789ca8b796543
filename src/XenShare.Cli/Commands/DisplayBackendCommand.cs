using System.Collections.Concurrent;
using System.CommandLine;
using System.Globalization;
using XenShare.Cli.Demo;
using XenShare.Displif;
using XenShare.Native;
using XenShare.Xenbus;
using XenShare.Xenstore;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Cli.Commands;

/// <summary>
/// <c>xenshare display-backend [--out DIR] [--every N] [--max-pngs N] [--exit-after N] [--frame-rate HZ]
/// [--backend-domid D] [--report-prefix P]</c>: a PV display backend for a real Xen domain (dom0, or a display
/// driver domain) on the native backend. It serves every vdispl device the toolstack configures for this domain
/// (<c>vdispl = [...]</c> in a guest's xl config) with the library's <see cref="DisplifServer"/>, shows each
/// frame through a <see cref="GntDevImportSink"/> (the dma-buf imported through gntdev as a device would, the
/// pixels read through a gntdev mapping) and writes a PNG of every N-th frame. Start it before <c>xl create</c>:
/// the toolstack waits for the backend to reach InitWait.
/// </summary>
internal static class DisplayBackendCommand
{
    private const uint FourCcXr24 = 0x34325258, FourCcAr24 = 0x34325241;   // DRM_FORMAT_XRGB8888 / ARGB8888

    /// <summary>Creates the <c>display-backend</c> command.</summary>
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Folder for the PNGs of shown frames (created if missing; existing files are kept).", DefaultValueFactory = _ => "display-out" };
        var every = new Option<int>("--every") { Description = "Write the PNG of every N-th frame of a device (the first frame always).", DefaultValueFactory = _ => 10 };
        var maxPngs = new Option<int>("--max-pngs") { Description = "At most this many PNGs per device (0: no limit).", DefaultValueFactory = _ => 0 };
        var exitAfter = new Option<int>("--exit-after") { Description = "Exit once this many devices were served to their end (0: serve until Ctrl+C).", DefaultValueFactory = _ => 0 };
        var frameRate = new Option<int>("--frame-rate") { Description = "The display's refresh rate: flip-done events are paced to it (1 to 240 Hz).", DefaultValueFactory = _ => 60 };
        var backendDomid = new Option<int>("--backend-domid") { Description = "This domain's id (0 for dom0; a driver domain gives its own).", DefaultValueFactory = _ => 0 };
        var reportPrefix = new Option<string>("--report-prefix") { Description = "Print machine-readable result lines with this prefix (as the real-Xen stage parses them).", DefaultValueFactory = _ => "" };
        foreach (var (option, min, max) in new[] { (every, 1, int.MaxValue), (maxPngs, 0, int.MaxValue), (exitAfter, 0, 1024), (frameRate, 1, 240), (backendDomid, 0, 0x7fef) })
        {
            option.Validators.Add(r =>
            {
                int v = r.GetValueOrDefault<int>();
                if (v < min || v > max) r.AddError($"{option.Name} must be between {min} and {max}.");
            });
        }
        var command = new Command("display-backend", "Serve the PV displays (vdispl) of guests on a real Xen domain: frames arrive as dma-bufs, PNGs of every N-th frame are written. Start it before `xl create`.");
        foreach (var option in new Option[] { output, every, maxPngs, exitAfter, frameRate, backendDomid, reportPrefix }) command.Options.Add(option);
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var settings = new Settings(
                parseResult.GetValue(output)!, parseResult.GetValue(every), parseResult.GetValue(maxPngs), parseResult.GetValue(exitAfter),
                parseResult.GetValue(frameRate), new DomainId((ushort)parseResult.GetValue(backendDomid)), parseResult.GetValue(reportPrefix) ?? "");
            return await RunAsync(settings, parseResult.InvocationConfiguration.Output, parseResult.InvocationConfiguration.Error, cancellationToken)
                .ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>The command's settings.</summary>
    internal sealed record Settings(string Output, int Every, int MaxPngs, int ExitAfter, int FrameRate, DomainId Backend, string ReportPrefix);

    /// <summary>Serves until cancelled or until <see cref="Settings.ExitAfter"/> devices ended; 0 when every
    /// DP item observed passed, 1 on a failure or when this is not a Xen domain.</summary>
    internal static async Task<int> RunAsync(Settings settings, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        if (!OperatingSystem.IsLinux() || !NativeXen.IsXenGuest)
        {
            await error.WriteLineAsync($"display-backend: needs a Xen domain with {NativeXen.GntDevPath} (and /dev/xen/xenbus); see `xenshare info`.").ConfigureAwait(false);
            return 1;
        }
        Directory.CreateDirectory(settings.Output);
        var report = new Report(settings, output);
        using var process = new LinuxGuestProcess();
        await using var xenstore = XenstoreClient.OpenXenbus(process);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var sinks = new ConcurrentBag<GntDevImportSink>();
        int ended = 0;
        var options = new DisplifBackendOptions { FrameInterval = TimeSpan.FromSeconds(1.0 / settings.FrameRate) };
        report.Line("READY", $"serving vdispl devices of dom{settings.Backend.Value}; PNGs to {Path.GetFullPath(settings.Output)}");
        try
        {
            await DisplifServer.ServeAsync(xenstore, process, settings.Backend,
                sinkFor: id =>
                {
                    var sink = new GntDevImportSink(process, settings.Backend);
                    sink.FrameShown += (in DisplayFrame frame) => report.OnFrame(id, frame);
                    sinks.Add(sink);
                    return sink;
                },
                options,
                started: (id, backend) =>
                {
                    report.Line("DEVICE", $"vdispl {Name(id)}: serving (frontend {backend.Device.FrontendPath})");
                    backend.RequestServed += (_, e) => report.OnRequest(id, backend, e);
                    backend.ConnectionChanged += (_, e) =>
                    {
                        report.OnConnection(id, backend, e);
                        if (e.Kind == DisplifConnectionChange.Connected)
                        {
                            // Evidence for the stage: what the toolstack's be-alloc node says now, read again.
                            string path = backend.Device.FrontendPath + "/" + DisplifAbi.XENDISPL_FIELD_BE_ALLOC;
                            _ = Task.Run(async () =>
                            {
                                string? now = await xenstore.TryReadStringAsync(path).ConfigureAwait(false);
                                report.Line("DEVICE", $"vdispl {Name(id)}: {path} reads '{now ?? "(missing)"}' after the connect; the backend took be-alloc {(backend.BackendAllocates ? 1 : 0)}");
                            });
                        }
                    };
                },
                ended: (id, e) =>
                {
                    report.Line("DEVICE", $"vdispl {Name(id)}: ended{(e is null ? "" : " with " + e.GetType().Name + ": " + e.Message)}");
                    if (e is not null) report.DeviceFailed(id, e);
                    if (settings.ExitAfter > 0 && Interlocked.Increment(ref ended) >= settings.ExitAfter) stop.Cancel();
                },
                stop.Token).ConfigureAwait(false);
        }
        finally
        {
            foreach (var sink in sinks) sink.Dispose();
        }
        return report.Finish();
    }

    private static string Name(XenbusDeviceId id) => string.Create(CultureInfo.InvariantCulture, $"{id.Frontend.Value}/{id.Id}");

    /// <summary>What the backend observed, turned into DP result lines at the end.</summary>
    private sealed class Report(Settings settings, TextWriter output)
    {
        private readonly Lock _gate = new();
        private readonly Dictionary<(byte Op, bool Ok), int> _requests = [];
        private readonly Dictionary<XenbusDeviceId, (long Frames, int Pngs)> _frames = [];
        private readonly HashSet<XenbusDeviceId> _connected = [];
        private readonly List<string> _failures = [];
        private readonly HashSet<string> _paths = [];
        private int _createsFrontendAllocated, _createsBackendAllocated;

        public void Line(string kind, string text)
        {
            lock (_gate) output.WriteLine((settings.ReportPrefix.Length > 0 ? settings.ReportPrefix : "display-backend: ") + kind + " " + text);
            output.Flush();
        }

        public void OnRequest(XenbusDeviceId id, DisplifBackend backend, DisplifRequestEventArgs e)
        {
            lock (_gate)
            {
                var key = (e.Operation, e.Status == 0);
                _requests[key] = _requests.GetValueOrDefault(key) + 1;
                if (e.Operation == DisplifAbi.XENDISPL_OP_DBUF_CREATE && e.Status == 0)
                {
                    if (backend.BackendAllocates) _createsBackendAllocated++;
                    else _createsFrontendAllocated++;
                }
                if (e.Status != 0) _failures.Add(string.Create(CultureInfo.InvariantCulture, $"{Name(id)}: op 0x{e.Operation:x2} id {e.Id} status {e.Status}"));
            }
        }

        public void OnConnection(XenbusDeviceId id, DisplifBackend backend, DisplifConnectionEventArgs e)
        {
            if (e.Kind == DisplifConnectionChange.Connected)
            {
                lock (_gate) _connected.Add(id);
                Line("DEVICE", string.Create(CultureInfo.InvariantCulture,
                    $"vdispl {Name(id)}: connected, {backend.Connectors.Count} connector(s) {string.Join(",", backend.Connectors.Select(c => c.Resolution))}, be-alloc {(backend.BackendAllocates ? 1 : 0)}"));
            }
            else if (e.Kind is DisplifConnectionChange.Faulted or DisplifConnectionChange.SinkFailed)
            {
                lock (_gate) _failures.Add($"{Name(id)}: {e.Kind} {e.Error?.Message}");
                Line("DEVICE", $"vdispl {Name(id)}: {e.Kind} {e.Error?.Message}");
            }
        }

        public void DeviceFailed(XenbusDeviceId id, Exception e)
        {
            lock (_gate) _failures.Add($"{Name(id)}: {e.GetType().Name}: {e.Message}");
        }

        public void OnFrame(XenbusDeviceId id, in DisplayFrame frame)
        {
            long n;
            bool write;
            lock (_gate)
            {
                var (frames, pngs) = _frames.GetValueOrDefault(id);
                n = ++frames;
                write = (n == 1 || n % settings.Every == 0) && (settings.MaxPngs == 0 || pngs < settings.MaxPngs)
                    && frame.Framebuffer.FourCC is FourCcXr24 or FourCcAr24;
                _frames[id] = (frames, write ? pngs + 1 : pngs);
                _paths.Add(frame.Path.ToString());
            }
            if (!write) return;
            var fb = frame.Framebuffer;
            string file = Path.Combine(settings.Output, string.Create(CultureInfo.InvariantCulture,
                $"vdispl-{id.Frontend.Value}-{id.Id}-conn{frame.Connector}-frame{n:D4}.png"));
            PngEncoder.Write(file, frame.Pixels, fb.Width, fb.Height, fb.Pitch);
            Line("FRAME", string.Create(CultureInfo.InvariantCulture,
                $"vdispl {Name(id)} connector {frame.Connector} frame {n} {fb.Width}x{fb.Height} via {frame.Path} -> {Path.GetFileName(file)}"));
        }

        private int Count(byte op, bool ok) => _requests.GetValueOrDefault((op, ok));

        /// <summary>Prints the DP lines and the summary; 0 when nothing failed.</summary>
        public int Finish()
        {
            var results = new List<(string Id, string Outcome, string Text)>();
            lock (_gate)
            {
                long frames = _frames.Values.Sum(f => f.Frames);
                int pngs = _frames.Values.Sum(f => f.Pngs);
                bool anyFailure = _failures.Count != 0;
                string failures = anyFailure ? "; failures: " + string.Join(" | ", _failures.Take(5)) : "";
                results.Add(("DP01+DP02", _connected.Count > 0 && !anyFailure ? "PASS" : "FAIL",
                    $"{_connected.Count} device(s) connected: versions published, connectors read, request rings and event pages mapped, event channels bound{failures}"));
                results.Add(("DP03", _createsFrontendAllocated > 0 && _createsBackendAllocated > 0 && Count(DisplifAbi.XENDISPL_OP_DBUF_CREATE, false) == 0 ? "PASS" : "FAIL",
                    $"DBUF_CREATE served {_createsFrontendAllocated} frontend-allocated (EXP_FROM_REFS) and {_createsBackendAllocated} backend-allocated (IMP_TO_REFS) buffer(s), {Count(DisplifAbi.XENDISPL_OP_DBUF_CREATE, false)} refused"));
                int destroys = Count(DisplifAbi.XENDISPL_OP_DBUF_DESTROY, true), attaches = Count(DisplifAbi.XENDISPL_OP_FB_ATTACH, true), detaches = Count(DisplifAbi.XENDISPL_OP_FB_DETACH, true);
                results.Add(("DP04", destroys > 0 && attaches > 0 && detaches > 0
                        && Count(DisplifAbi.XENDISPL_OP_DBUF_DESTROY, false) + Count(DisplifAbi.XENDISPL_OP_FB_ATTACH, false) + Count(DisplifAbi.XENDISPL_OP_FB_DETACH, false) == 0 ? "PASS" : "FAIL",
                    $"DBUF_DESTROY answered 0 after the release {destroys} time(s); FB_ATTACH {attaches}, FB_DETACH {detaches}"));
                int configs = Count(DisplifAbi.XENDISPL_OP_SET_CONFIG, true), flips = Count(DisplifAbi.XENDISPL_OP_PG_FLIP, true);
                results.Add(("DP05", configs > 0 && flips > 0 && frames > 0 && Count(DisplifAbi.XENDISPL_OP_PG_FLIP, false) == 0 ? "PASS" : "FAIL",
                    $"SET_CONFIG {configs}, PG_FLIP {flips} (each with its flip event), {frames} frame(s) shown via {string.Join("+", _paths)}, {pngs} PNG(s)"));
                results.Add(("DP06", "SKIP", "Linux's frontend sends no bad requests; DP06 runs on the emulator (DisplifTests, DisplifHostileTests)"));
            }
            if (settings.ReportPrefix.Length > 0) Line("SUITE", string.Create(CultureInfo.InvariantCulture, $"{results.Count} items"));
            foreach (var (id, outcome, text) in results) Line("CONFORMANCE", $"{id} {outcome} {text}");
            int passed = results.Count(r => r.Outcome == "PASS"), failed = results.Count(r => r.Outcome == "FAIL"), skipped = results.Count(r => r.Outcome == "SKIP");
            Line("SUMMARY", string.Create(CultureInfo.InvariantCulture, $"{passed} passed, {failed} failed, {skipped} skipped"));
            return failed == 0 ? 0 : 1;
        }
    }
}
