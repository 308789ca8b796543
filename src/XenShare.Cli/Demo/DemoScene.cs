using System.Diagnostics;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Cli.Demo;

/// <summary>
/// The demo scene on a fresh emulated host sized for it: a domU frontend (<see cref="DemoFrontend"/>) and a dom0
/// backend (<see cref="DemoBackend"/>), each on its own thread, talking through granted pages, a
/// <see cref="DisplayRing"/> and an event channel. After the run (or a cancellation) both sides tear down, the
/// host's leak check runs, and the contact sheet is written.
/// </summary>
internal static class DemoScene
{
    private static readonly TimeSpan JoinTimeout = TimeSpan.FromMinutes(2);

    /// <summary>Runs the scene. <paramref name="frameDone"/> is called (on the frontend's thread) with the number
    /// of flips completed so far. Cancelling <paramref name="cancellationToken"/> stops both sides; the result then
    /// has <see cref="DemoResult.Cancelled"/> set and still reports the teardown's leak check. Errors of either
    /// side are rethrown after the teardown.</summary>
    public static DemoResult Run(DemoOptions options, Action<int>? frameDone = null, CancellationToken cancellationToken = default)
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
        // dom0 needs each framebuffer as one contiguous DMA allocation, plus a frame for copy mode.
        var dom0Config = new DomainConfig { RamPages = bufferPages + options.PagesPerBuffer + 4096, UnpopulatedPages = Math.Max(65536, bufferPages + 1024) };
        int machineFrames = domUConfig.RamPages + dom0Config.RamPages + (4 * grantFrames) + 16384;

        using var host = new EmulatedHost(machineFrames, dom0Config);
        var domU = host.CreateGuest(domUConfig, domUKernel);
        var backendProcess = host.Dom0.StartProcess();
        var frontendProcess = domU.StartProcess();
        try
        {
            using var xenbus = new DemoXenbus();
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var frontend = new DemoFrontend(options, frontendProcess, host.Dom0.Id, xenbus, frameDone);
            var backend = new DemoBackend(options, backendProcess, domU.Id, xenbus);
            Exception? frontendError = null, backendError = null;
            long start = Stopwatch.GetTimestamp();
            var frontendThread = Start("demo-frontend (domU)", () => frontend.Run(stop.Token), e => { frontendError = e; stop.Cancel(); });
            var backendThread = Start("demo-backend (dom0)", () => backend.Run(stop.Token), e => { backendError = e; stop.Cancel(); });
            bool joined = frontendThread.Join(JoinTimeout) & backendThread.Join(JoinTimeout);
            var elapsed = Stopwatch.GetElapsedTime(start);
            if (!joined) throw new TimeoutException("the demo's frontend or backend did not stop");

            bool idle = backendProcess.WaitIdle(TimeSpan.FromSeconds(30)) & frontendProcess.WaitIdle(TimeSpan.FromSeconds(30));
            var leaks = new List<string>(host.CheckLeaks());
            leaks.AddRange(host.CheckIsolation());
            if (!idle) leaks.Add("a system call was still in progress after the teardown");
            if (frontend.BackendCloseTimedOut) leaks.Add("the backend did not close before the frontend ended grant access");

            // The side that failed first cancels the other, which then ends with OperationCanceledException.
            var failure = frontendError is not null and not OperationCanceledException ? frontendError
                : backendError is not null and not OperationCanceledException ? backendError
                : null;
            if (failure is not null) throw new InvalidOperationException("the demo failed: " + failure.Message, failure);
            bool cancelled = cancellationToken.IsCancellationRequested && frontend.Completed < options.Frames;
            if (!cancelled && (frontendError ?? backendError) is { } stopped) throw new InvalidOperationException("the demo stopped unexpectedly", stopped);

            string? sheetPath = null;
            if (!cancelled && backend.Sheet is { Count: > 0 } sheet)
            {
                sheetPath = options.ContactSheetPath;
                sheet.Save(sheetPath);
            }

            return new DemoResult
            {
                Options = options,
                FramesCompleted = frontend.Completed,
                Cancelled = cancelled,
                Elapsed = elapsed,
                DisplayPathTime = backend.DisplayPathTime,
                MicrosecondsPerFlip = backend.MedianFlipMicroseconds,
                CpuBytesCopied = backend.CpuBytesCopied,
                SetupGrantOps = backend.SetupGrantOps,
                GrantOpsPerFrame = backend.Flips == 0 ? 0 : backend.FrameGrantOps / backend.Flips,
                ScanoutSegments = backend.ScanoutSegments,
                ZeroCopyFrames = backend.ZeroCopyFrames,
                PngFiles = backend.PngFiles,
                ContactSheet = sheetPath,
                Released = backend.Released,
                Leaks = leaks,
            };
        }
        finally
        {
            backendProcess.Dispose();
            frontendProcess.Dispose();
        }
    }

    private static Thread Start(string name, Action body, Action<Exception> failed)
    {
        var thread = new Thread(() =>
        {
            try
            {
                body();
            }
            catch (Exception e)
            {
                failed(e);
            }
        })
        { IsBackground = true, Name = name };
        thread.Start();
        return thread;
    }

    /// <summary>Removes the files of an earlier run (only the demo's own names) so the folder shows this run.</summary>
    private static void DeleteOldOutput(string folder)
    {
        foreach (string file in Directory.EnumerateFiles(folder, "frame_*.png")) File.Delete(file);
        string sheet = Path.Combine(folder, "contact_sheet.png");
        if (File.Exists(sheet)) File.Delete(sheet);
    }
}
