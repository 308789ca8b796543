using System.Diagnostics;
using System.Globalization;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Xenstore;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Cli.Demo;

/// <summary>
/// The demo scene on a fresh emulated host sized for it, on the PV display protocol as real drivers speak it:
/// the toolstack writes the <c>vdispl/0</c> device directories in the emulated xenstore (as <c>xl</c> does for
/// <c>vdispl = [ 'backend=..,be-alloc=..,connectors=demo0:WxH' ]</c>), the backend domain's
/// <see cref="DemoBackend"/> (the library's displif backend; a display driver domain by default, or dom0) and
/// domU's <see cref="DemoFrontend"/> (the library's displif frontend) each
/// walk the xenbus states to Connected, and the frames travel as displif requests on the shared ring and flip
/// events on the event page. After the run (or a cancellation) both sides tear down, the host's leak and
/// isolation checks run, and the contact sheet is written, stamped with the mode and the counters. Then, unless
/// <see cref="DemoOptions.Compare"/> is off, the same frames run twice more, each on a fresh host and writing nothing
/// (PNGs encoded into hashes only): on this run's display path and on the other one
/// (<see cref="DemoOptions.ComparisonOptions"/>), so both paths are timed alike in one run, PNG work excluded, and
/// the two modes' PNG files are compared byte for byte.
/// </summary>
internal static class DemoScene
{
    /// <summary>The vdispl device id.</summary>
    public const int DeviceId = 0;

    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Runs the scene. <paramref name="frameDone"/> is called (on the frontend's side) with the number
    /// of frames shown so far, <paramref name="timingFrameDone"/> likewise in each timing pass, with that pass's
    /// options. Cancelling <paramref name="cancellationToken"/> stops both sides; the result then has
    /// <see cref="DemoResult.Cancelled"/> (or a timing pass's) set and still reports the teardown's leak check and
    /// exactly the files written. Errors of either side are rethrown (as <see cref="InvalidOperationException"/>)
    /// after the teardown; an output folder that holds files the demo did not write is refused
    /// (<see cref="InvalidOperationException"/>) unless <see cref="DemoOptions.Force"/> is set.</summary>
    public static DemoResult Run(DemoOptions options, Action<int>? frameDone = null, Action<DemoOptions, int>? timingFrameDone = null, CancellationToken cancellationToken = default) =>
        RunAsync(options, frameDone, timingFrameDone, cancellationToken).GetAwaiter().GetResult();

    /// <summary>The asynchronous form of <see cref="Run"/>.</summary>
    public static async Task<DemoResult> RunAsync(DemoOptions options, Action<int>? frameDone = null, Action<DemoOptions, int>? timingFrameDone = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0) throw new ArgumentException(string.Join("; ", problems), nameof(options));
        var folder = DemoOutputFolder.Open(options);
        if (options.Compare) await WarmUpAsync(options, cancellationToken).ConfigureAwait(false);

        var recorder = new DemoRecorder(options, folder);
        var result = await RunPassAsync(options, recorder, frameDone, cancellationToken).ConfigureAwait(false);
        if (!result.Cancelled && recorder.Sheet is { Count: > 0 } sheet)
        {
            sheet.SetCaption(Stamp(result));
            using var file = folder.Create(DemoOptions.ContactSheetFileName);
            sheet.Save(file.Stream);
            file.Commit();
            result = result with { ContactSheet = file.FilePath, ContactSheetCaption = sheet.CaptionLines };
        }
        if (result.Cancelled || !options.Compare) return result;

        // The timing passes: this run's display path again, then the other one, over the same frames, each on a fresh
        // host and both alike - PNGs encoded into a hash, no file written - so that neither pays for file I/O the other
        // does not (a pass writing files measured up to 2.6 x the time per flip of the same path writing none).
        var recorders = new List<DemoRecorder> { recorder };
        var timed = new List<DemoResult>();
        foreach (var pass in new[] { options with { Compare = false }, options.ComparisonOptions })
        {
            var passRecorder = new DemoRecorder(pass, folder: null);
            recorders.Add(passRecorder);
            var passResult = await RunPassAsync(pass, passRecorder, timingFrameDone is null ? null : n => timingFrameDone(pass, n), cancellationToken).ConfigureAwait(false);
            timed.Add(passResult);
            if (passResult.Cancelled) break;
        }
        int compared = 0, identical = 0;
        for (int f = 0; f < options.Frames; f++)
        {
            var hashes = recorders.Select(r => r.PngHash(f)).ToList();
            if (hashes.Any(h => h is null)) continue;
            compared++;
            if (hashes.All(h => h == hashes[0])) identical++;
        }
        return result with { TimedRun = timed[0], Comparison = timed.Count > 1 ? timed[1] : null, PngsCompared = compared, PngsIdentical = identical };
    }

    /// <summary>Before the timed passes: both display paths once, at 64x64 for a few frames, on a host of their own,
    /// nothing written and nothing reported - so that neither timed pass pays for compiling the code both run (the
    /// tool runs without tiered compilation: every method is compiled fully optimised at its first call).</summary>
    private static async Task WarmUpAsync(DemoOptions options, CancellationToken cancellationToken)
    {
        var small = options with { Width = DemoOptions.MinDimension, Height = DemoOptions.MinDimension, Frames = 4, Buffers = 1, PngEvery = 1, Compare = false };
        foreach (var pass in new[] { small, small.ComparisonOptions })
        {
            if (cancellationToken.IsCancellationRequested) return;
            await RunPassAsync(pass, new DemoRecorder(pass, folder: null), null, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The contact sheet's stamp: the mode (zero copy or not, the backend's domain, who allocates the buffers,
    /// the placement) and the counters of the run.</summary>
    internal static IReadOnlyList<IReadOnlyList<string>> Stamp(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        var c = CultureInfo.InvariantCulture;
        string mode = o.Copy ? "mode: copy (GRANT_COPY)" : result.ZeroCopy ? "mode: zero-copy (dma-buf scan-out)" : "mode: dma-buf scan-out, not zero copy";
        string backend = string.Create(c, $"backend: dom{result.BackendDomainId} ({(result.BackendDirectMapped ? "direct-mapped" : "driver domain")})");
        return
        [
            [string.Create(c, $"xenshare demo {o.Width}x{o.Height}"), mode],
            [backend, o.BackendAllocated ? "be-alloc" : "fe-alloc", o.Fragmented ? "fragmented memory" : "2 MiB extents"],
            [
                string.Create(c, $"frames shown: {result.FramesCompleted}"),
                string.Create(c, $"CPU bytes copied: {result.CpuBytesCopied:N0}"),
                string.Create(c, $"bounce bytes: {result.BounceBytes:N0}"),
                string.Create(c, $"mapping errors: {result.MappingErrors}"),
            ],
            [string.Create(c, $"display path: {result.MicrosecondsPerFlip:0.0} us per flip (median, PNG writing excluded)")],
        ];
    }

    /// <summary>One pass: a fresh emulated host sized for the scene, both sides until every frame was shown or the run
    /// was cancelled, the teardown and its checks.</summary>
    private static async Task<DemoResult> RunPassAsync(DemoOptions options, DemoRecorder recorder, Action<int>? frameDone, CancellationToken cancellationToken)
    {
        int bufferPages = options.Buffers * options.PagesPerBuffer;
        int grantFrames = Math.Max(64, ((bufferPages + 64) / 512) + 2);
        var domUConfig = new DomainConfig { RamPages = bufferPages + 2048, MaxGrantFrames = grantFrames };
        var domUKernel = new KernelOptions { GntAllocLimit = bufferPages + 64 };
        // The backend's domain: each framebuffer as one contiguous DMA allocation (be-alloc), or mapped for export,
        // plus a frame for the copy path; and grant frames for the refs it grants with be-alloc.
        var backendConfig = new DomainConfig
        {
            RamPages = (2 * bufferPages) + options.PagesPerBuffer + 4096,
            UnpopulatedPages = Math.Max(65536, bufferPages + 1024),
            MaxGrantFrames = grantFrames,
        };
        bool driverDomain = options.BackendDomain == DemoBackendDomain.Driver;
        var dom0Config = driverDomain ? new DomainConfig() : backendConfig;
        int machineFrames = domUConfig.RamPages + backendConfig.RamPages + (driverDomain ? dom0Config.RamPages : 0) + (4 * grantFrames) + 16384;
        var placement = options.Fragmented ? MachinePlacement.Fragmented : MachinePlacement.Extents;

        using var host = new EmulatedHost(machineFrames, dom0Config, placement: placement);
        var domU = host.CreateGuest(domUConfig, domUKernel);
        // A display driver domain: not direct-mapped, its display passed through behind the SMMU (DM05).
        var backendGuest = driverDomain ? host.CreateGuest(backendConfig) : host.Dom0;
        backendGuest.AddDisplay();   // the display controller of the backend's domain, reached through the seam
        var backendProcess = backendGuest.StartProcess();
        var frontendProcess = domU.StartProcess();
        try
        {
            // The toolstack (xl): both device directories, then the vdispl fields in the frontend directory.
            var (fePath, _) = host.AddDevice(domU, backendGuest, DisplifAbi.XENDISPL_DRIVER_NAME, DeviceId);
            Toolstack(host, fePath + "/" + DisplifAbi.XENDISPL_FIELD_BE_ALLOC, options.BackendAllocated ? "1" : "0");
            Toolstack(host, fePath + "/0/" + DisplifAbi.XENDISPL_FIELD_RESOLUTION, string.Create(CultureInfo.InvariantCulture, $"{options.Width}x{options.Height}"));
            Toolstack(host, fePath + "/0/" + DisplifAbi.XENDISPL_FIELD_UNIQUE_ID, "demo0");

            var frontend = new DemoFrontend(options, frameDone);
            Exception? failure = null;
            bool cancelled = false;
            long start = Stopwatch.GetTimestamp();
            TimeSpan elapsed;
            var backend = await DemoBackend.StartAsync(options, backendProcess, backendGuest.Id, domU.Id, DeviceId, recorder, CancellationToken.None)
                .ConfigureAwait(false);
            try
            {
                var client = XenstoreClient.OpenXenbus(frontendProcess);
                await using (client.ConfigureAwait(false))
                {
                    try
                    {
                        await Task.Run(() => frontend.RunAsync(client, frontendProcess, domU.Id, DeviceId, cancellationToken), CancellationToken.None)
                            .ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                    {
                        cancelled = frontend.Completed < options.Frames;
                    }
                    catch (Exception e)
                    {
                        failure = e;
                    }
                }
                elapsed = Stopwatch.GetElapsedTime(start);
            }
            finally
            {
                await backend.DisposeAsync().ConfigureAwait(false);
            }

            bool idle = backendProcess.WaitIdle(IdleTimeout) & frontendProcess.WaitIdle(IdleTimeout);
            var leaks = new List<string>(host.CheckLeaks());
            leaks.AddRange(host.CheckIsolation());
            if (!idle) leaks.Add("a system call was still in progress after the teardown");
            if (frontend.BackendCloseTimedOut) leaks.Add("the backend did not let go before the frontend closed the device");

            if (failure is not null)
            {
                string why = backend.Fault is { } fault ? $" (backend: {fault.Message})" : "";
                throw new InvalidOperationException("the demo failed: " + failure.Message + why, failure);
            }

            int shown = frontend.Completed;
            var displayPath = new double[shown];
            long displayTicks = 0;
            for (int f = 0; f < shown; f++)
            {
                long ticks = Math.Max(0, frontend.RoundTripTicks(f) - recorder.OutputTicks(f));
                displayTicks += ticks;
                displayPath[f] = Stopwatch.GetElapsedTime(0, ticks).TotalMicroseconds;
            }

            var scanout = backend.Scanout;
            var copy = backend.Copy;
            var stats = scanout?.LastStats;
            return new DemoResult
            {
                Options = options,
                FramesCompleted = shown,
                FramesPresented = (int)(scanout?.Presents ?? copy!.Presents),
                Cancelled = cancelled,
                Elapsed = elapsed,
                DisplayPathTime = Stopwatch.GetElapsedTime(0, displayTicks),
                MicrosecondsPerFlip = Median(displayPath),
                CpuBytesCopied = stats is { } st ? st.CpuBytesCopied : copy!.BytesCopied,
                BounceBytes = stats?.SwiotlbBytesCopied ?? 0,
                MappingErrors = scanout?.MappingErrors ?? 0,
                BackendDomainId = backendGuest.Id.Value,
                BackendDirectMapped = backendGuest.Domain.IsDirectMapped,
                SetupGrantOps = 2 + ((long)options.Buffers * options.PagesPerBuffer),
                GrantOpsPerFrame = copy is null || copy.Presents == 0 ? 0 : copy.GrantOps / copy.Presents,
                ScanoutSegments = scanout?.SegmentCounts ?? [],
                ZeroCopyFrames = stats?.ZeroCopyFrames ?? 0,
                PngFiles = recorder.PngFiles,
                PngsEncoded = recorder.PngsEncoded,
                ContactSheet = null,
                Released = frontend.Released,
                Leaks = leaks,
                Requests = backend.RequestSummary(),
                BackendStates = backend.StateSummary(),
                DevicePath = fePath,
            };
        }
        finally
        {
            backendProcess.Dispose();
            frontendProcess.Dispose();
        }
    }

    private static void Toolstack(EmulatedHost host, string path, string value)
    {
        int rc = host.Xenstore.Write(path, value);
        if (rc < 0) throw new InvalidOperationException($"xenstore write of {path} failed: {XenShare.Abi.Errno.Name(-rc)}");
    }

    private static double Median(double[] values)
    {
        if (values.Length == 0) return 0;
        var sorted = (double[])values.Clone();
        Array.Sort(sorted);
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }
}
