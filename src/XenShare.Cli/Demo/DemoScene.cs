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
/// isolation checks run, and the contact sheet is written.
/// </summary>
internal static class DemoScene
{
    /// <summary>The vdispl device id.</summary>
    public const int DeviceId = 0;

    private static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Runs the scene. <paramref name="frameDone"/> is called (on the frontend's side) with the number
    /// of frames shown so far. Cancelling <paramref name="cancellationToken"/> stops both sides; the result then
    /// has <see cref="DemoResult.Cancelled"/> set and still reports the teardown's leak check. Errors of either
    /// side are rethrown (as <see cref="InvalidOperationException"/>) after the teardown.</summary>
    public static DemoResult Run(DemoOptions options, Action<int>? frameDone = null, CancellationToken cancellationToken = default) =>
        RunAsync(options, frameDone, cancellationToken).GetAwaiter().GetResult();

    /// <summary>The asynchronous form of <see cref="Run"/>.</summary>
    public static async Task<DemoResult> RunAsync(DemoOptions options, Action<int>? frameDone = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var problems = options.Validate();
        if (problems.Count > 0) throw new ArgumentException(string.Join("; ", problems), nameof(options));
        Directory.CreateDirectory(options.OutputDirectory);
        DeleteOldOutput(options.OutputDirectory);

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

            var recorder = new DemoRecorder(options);
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

            string? sheetPath = null;
            if (!cancelled && recorder.Sheet is { Count: > 0 } sheet)
            {
                sheetPath = options.ContactSheetPath;
                sheet.Save(sheetPath);
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
                ContactSheet = sheetPath,
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

    /// <summary>Removes the files of an earlier run (only the demo's own names) so the folder shows this run.</summary>
    private static void DeleteOldOutput(string folder)
    {
        foreach (string file in Directory.EnumerateFiles(folder, "frame_*.png")) File.Delete(file);
        string sheet = Path.Combine(folder, "contact_sheet.png");
        if (File.Exists(sheet)) File.Delete(sheet);
    }
}
