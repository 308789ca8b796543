using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using XenShare.Cli.Demo;
using XenShare.Cli.Json;

namespace XenShare.Cli.Commands;

/// <summary><c>xenshare demo [--width W] [--height H] [--frames N] [--buffers B] [--out DIR] [--force] [--be-alloc] [--copy]
/// [--png-every K] [--backend-domain driver|dom0] [--fragmented] [--no-compare] [--json]</c>:
/// a para-virtual display (displif) on the embedded emulated host. The toolstack writes the vdispl device in the
/// emulated xenstore; domU's frontend and the backend (the library's DisplifFrontend and DisplifBackend) walk
/// the xenbus states to Connected; domU draws animated frames into its framebuffers and shows them with
/// SET_CONFIG and PG_FLIP; the backend hands each framebuffer's dma-buf to the emulated display, which scans
/// every frame out in place into a PNG file, with no CPU copy. <c>--be-alloc</c>: the backend allocates the
/// framebuffers (contiguous DMA memory) and grants them to domU. <c>--copy</c> runs the same scene with a
/// GRANT_COPY display instead. Then the same frames run on both display paths, writing nothing, so that both paths
/// are timed alike in one run and their PNGs compared (<c>--no-compare</c> skips it).</summary>
internal static class DemoCommand
{
    /// <summary>Exit code of a run stopped by Ctrl+C (128 + SIGINT).</summary>
    public const int CancelledExitCode = 130;

    /// <summary>Exit code of bad options or a failed run.</summary>
    public const int ErrorExitCode = 1;

    /// <summary>Exit code of a run whose teardown was not clean (leaks, or a dma-buf not released).</summary>
    public const int UncleanExitCode = 2;

    /// <summary>Exit code of an output folder refused because it holds files the demo did not write (without
    /// <c>--force</c>): nothing was run, nothing deleted.</summary>
    public const int OutputRefusedExitCode = 2;

    /// <summary>Creates the <c>demo</c> command.</summary>
    public static Command Create()
    {
        var defaults = new DemoOptions();
        var width = new Option<int>("--width") { CustomParser = r => WholeNumber(r, "--width", defaults.Width), Description = $"Frame width in pixels: even, {DemoOptions.MinDimension} to {DemoOptions.MaxWidth}.", DefaultValueFactory = _ => defaults.Width };
        var height = new Option<int>("--height") { CustomParser = r => WholeNumber(r, "--height", defaults.Height), Description = $"Frame height in pixels: even, {DemoOptions.MinDimension} to {DemoOptions.MaxHeight}.", DefaultValueFactory = _ => defaults.Height };
        var frames = new Option<int>("--frames") { CustomParser = r => WholeNumber(r, "--frames", defaults.Frames), Description = "Frames to show (page flips).", DefaultValueFactory = _ => defaults.Frames };
        var buffers = new Option<int>("--buffers") { CustomParser = r => WholeNumber(r, "--buffers", defaults.Buffers), Description = $"Framebuffers the guest cycles through (1 to {DemoOptions.MaxBuffers}).", DefaultValueFactory = _ => defaults.Buffers };
        var output = new Option<string>("--out") { Description = $"Output folder for frame_NNNN.png and contact_sheet.png. The demo lists what it writes there in {DemoOutputFolder.MarkerName} and deletes only those files before its next run; a folder holding other files is refused (exit code 2) unless --force is given.", DefaultValueFactory = _ => defaults.OutputDirectory };
        var force = new Option<bool>("--force") { Description = "Write into an --out folder that holds files the demo did not write: they are kept, and any named like the demo's files (frame_NNNN.png, contact_sheet.png) are overwritten." };
        var noCompare = new Option<bool>("--no-compare") { Description = "Skip the timing passes (the same frames on this display path and on the other one - GRANT_COPY after zero copy, zero copy after --copy - timed alike in the same run, PNGs compared byte for byte, nothing written)." };
        var copy = new Option<bool>("--copy") { Description = "Use the copying path (GRANT_COPY of every frame into a dom0 buffer) instead of zero-copy dma-buf scan-out, for comparison." };
        var beAlloc = new Option<bool>("--be-alloc") { Description = "Backend-allocated framebuffers (be-alloc = 1): dom0 allocates contiguous DMA memory, grants it to domU (IMP_TO_REFS), domU maps it and draws into it." };
        var pngEvery = new Option<int>("--png-every") { CustomParser = r => WholeNumber(r, "--png-every", 1), Description = "Write the PNG of every N-th frame only (the last frame is always written).", DefaultValueFactory = _ => 1 };
        var backendDomain = new Option<string>("--backend-domain") { Description = "Where the display backend and its display run: 'driver' (default: a display driver domain, not direct-mapped, its display behind the SMMU, as zero-copy display backends run on Arm) or 'dom0' (direct-mapped: its display sees machine addresses through the Xen swiotlb).", DefaultValueFactory = _ => "driver" };
        backendDomain.AcceptOnlyFromAmong("driver", "dom0");
        var fragmented = new Option<bool>("--fragmented") { Description = "Place machine memory deliberately fragmented (no two consecutive guest frames of a domU are machine-consecutive) instead of Xen's 2 MiB extents." };
        var json = new Option<bool>("--json") { Description = "Print the run's summary as one JSON object (frames_shown, cpu_bytes_copied, bounce_bytes, mapping_errors, scanout_us_per_flip, copy_us_per_flip, copy_to_scanout_ratio, timed, comparison, ...) instead of the tables." };

        var command = new Command("demo", "The main job: a para-virtual display (displif, xen/io/displif.h) on the emulated Xen host. The toolstack writes the vdispl device in xenstore; domU's frontend and the backend (in a display driver domain, or dom0 with --backend-domain dom0) walk the xenbus states to Connected; domU draws frames into its framebuffers and shows them with SET_CONFIG and PG_FLIP; the backend hands each framebuffer's dma-buf to its display device, which maps it as Linux on Xen would (in place, bounced, or refused) and scans every frame out into a PNG file. Then the same frames run on both display paths (zero copy and GRANT_COPY) writing nothing, so both are timed alike in one run, PNG work excluded. Prints the summary tables (or --json) with the copies, mapping errors and times per flip, and writes a contact sheet stamped with the mode and the counters. Exit codes: 0 done, 1 bad options or a failure, 2 --out refused or an unclean teardown, 130 Ctrl+C (SIGINT), 143 SIGTERM.");
        foreach (var option in new Option[] { width, height, frames, buffers, output, force, beAlloc, copy, pngEvery, backendDomain, fragmented, noCompare, json }) command.Options.Add(option);
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            var options = new DemoOptions
            {
                Width = parseResult.GetValue(width),
                Height = parseResult.GetValue(height),
                Frames = parseResult.GetValue(frames),
                Buffers = parseResult.GetValue(buffers),
                OutputDirectory = parseResult.GetValue(output) ?? defaults.OutputDirectory,
                Copy = parseResult.GetValue(copy),
                BackendAllocated = parseResult.GetValue(beAlloc),
                PngEvery = parseResult.GetValue(pngEvery),
                BackendDomain = parseResult.GetValue(backendDomain) == "dom0" ? DemoBackendDomain.Dom0 : DemoBackendDomain.Driver,
                Fragmented = parseResult.GetValue(fragmented),
                Compare = !parseResult.GetValue(noCompare),
                Force = parseResult.GetValue(force),
            };
            return await RunAsync(options, parseResult.InvocationConfiguration.Output, parseResult.InvocationConfiguration.Error, cancellationToken, parseResult.GetValue(json)).ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>An integer option's value, or a parse error that names the option (not a .NET type).</summary>
    private static int WholeNumber(System.CommandLine.Parsing.ArgumentResult result, string option, int fallback)
    {
        if (result.Tokens.Count == 0) return fallback;
        string text = result.Tokens[^1].Value;
        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value)) return value;
        result.AddError($"{option} takes a whole number, not '{text}'");
        return fallback;
    }

    /// <summary>Validates, checks the output folder, runs the scene with a progress bar (or progress lines), prints
    /// the summary; returns the exit code.</summary>
    internal static async Task<int> RunAsync(DemoOptions options, TextWriter output, TextWriter error, CancellationToken cancellationToken, bool json = false)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(output);
        ArgumentNullException.ThrowIfNull(error);
        var problems = options.Validate();
        string? outProblem = problems.Count == 0 ? options.CheckOutputDirectory() : null;
        if (outProblem is not null) problems = [.. problems, outProblem];
        if (problems.Count > 0)
        {
            foreach (string p in problems) await error.WriteLineAsync("demo: " + p).ConfigureAwait(false);
            return ErrorExitCode;
        }

        var folder = DemoOutputFolder.Inspect(options.OutputDirectory);
        if (folder.Foreign.Count > 0)
        {
            if (!options.Force)
            {
                await error.WriteLineAsync("demo: " + DemoOutputFolder.RefusalMessage(options.OutputDirectory, folder.Foreign)).ConfigureAwait(false);
                return OutputRefusedExitCode;
            }
            var overwritten = folder.Foreign.Where(DemoOutputFolder.IsOwnName).ToList();
            await error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"demo: --force: keeping {folder.Foreign.Count - overwritten.Count} file(s) in {options.OutputDirectory} that the demo did not write{(overwritten.Count == 0 ? "" : $"; overwriting {overwritten.Count} named like its own: {string.Join(", ", overwritten.Take(5))}{(overwritten.Count > 5 ? ", ..." : "")}")}")).ConfigureAwait(false);
        }

        var console = CliConsole.Create(output, out bool interactive);
        interactive &= !json;
        DemoResult result;
        try
        {
            result = interactive
                ? await RunWithProgressBarAsync(options, console, cancellationToken).ConfigureAwait(false)
                : await RunWithProgressLinesAsync(options, json ? null : output, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException or UnauthorizedAccessException or XenShare.Api.XenShareException
            or XenShare.Displif.DisplifRequestException or XenShare.Xenstore.XenstoreException)
        {
            await error.WriteLineAsync("demo failed: " + e.Message + (e.InnerException is { } inner ? Environment.NewLine + "  " + inner : "")).ConfigureAwait(false);
            return ErrorExitCode;
        }

        if (result.AnyCancelled)
        {
            if (json) await output.WriteLineAsync(Json(result)).ConfigureAwait(false);
            await (json ? error : output).WriteLineAsync(CancelledSummary(result)).ConfigureAwait(false);
            await WriteLeaksAsync(error, result).ConfigureAwait(false);
            return CancelledExitCode;
        }

        if (json) await output.WriteLineAsync(Json(result)).ConfigureAwait(false);
        else
        {
            foreach (var table in Tables(result)) console.Write(table);
            foreach (string note in Notes(result)) console.Write(new Text(note + "\n"));
        }
        if (!result.Clean)
        {
            await WriteLeaksAsync(error, result).ConfigureAwait(false);
            return UncleanExitCode;
        }
        return 0;
    }

    private static async Task<DemoResult> RunWithProgressBarAsync(DemoOptions options, IAnsiConsole console, CancellationToken cancellationToken) =>
        await console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
            .StartAsync(async ctx =>
            {
                var main = ctx.AddTask(string.Create(CultureInfo.InvariantCulture, $"{options.Width}x{options.Height} {Mode(options)}"), maxValue: options.Frames);
                var timing = options.Compare
                    ? new[] { options, options.ComparisonOptions }.ToDictionary(
                        o => o.Copy,
                        o => ctx.AddTask("timing: " + PathName(o) + ", nothing written", autoStart: false, maxValue: options.Frames))
                    : [];
                var run = Task.Run(
                    () => DemoScene.RunAsync(options, done => main.Value = done, (pass, done) =>
                    {
                        var task = timing[pass.Copy];
                        task.StartTask();
                        task.Value = done;
                    }, cancellationToken),
                    CancellationToken.None);
                while (!run.IsCompleted)
                {
                    await Task.WhenAny(run, Task.Delay(100, CancellationToken.None)).ConfigureAwait(false);
                    ctx.Refresh();
                }
                return await run.ConfigureAwait(false);
            }).ConfigureAwait(false);

    /// <summary>Runs the scene and, when <paramref name="output"/> is given, prints where it is: a line when the first
    /// frame of a pass was shown, then at most one a second, and one at a pass's last frame.</summary>
    private static async Task<DemoResult> RunWithProgressLinesAsync(DemoOptions options, TextWriter? output, CancellationToken cancellationToken)
    {
        if (output is null) return await Task.Run(() => DemoScene.RunAsync(options, cancellationToken: cancellationToken), CancellationToken.None).ConfigureAwait(false);
        await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
            $"rendering {options.Frames} frames of {options.Width}x{options.Height}, {Mode(options)}, into {options.OutputDirectory} ...")).ConfigureAwait(false);
        if (options.Compare)
            await output.WriteLineAsync($"then the same frames on both display paths for the timing, nothing written: {PathName(options)}, {PathName(options.ComparisonOptions)}").ConfigureAwait(false);
        var gate = new Lock();
        long last = 0;
        void Report(string pass, int done)
        {
            lock (gate)
            {
                long now = System.Diagnostics.Stopwatch.GetTimestamp();
                if (done != 1 && done != options.Frames && System.Diagnostics.Stopwatch.GetElapsedTime(last, now) < TimeSpan.FromSeconds(1)) return;
                last = now;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"progress: {pass}{done} of {options.Frames} frames shown"));
                output.Flush();
            }
        }
        return await Task.Run(() => DemoScene.RunAsync(options, done => Report("", done), (pass, done) => Report("timing, " + PathName(pass) + ": ", done), cancellationToken), CancellationToken.None)
            .ConfigureAwait(false);
    }

    private static async Task WriteLeaksAsync(TextWriter error, DemoResult result)
    {
        foreach (var run in new[] { result, result.TimedRun, result.Comparison })
        {
            if (run is null) continue;
            string which = ReferenceEquals(run, result) ? "" : "timing pass (" + PathName(run.Options) + "): ";
            if (!run.Released) await error.WriteLineAsync("demo: " + which + "a framebuffer was not released in time (DBUF_DESTROY answered an error)").ConfigureAwait(false);
            foreach (string leak in run.Leaks) await error.WriteLineAsync("demo: " + which + "leak: " + leak).ConfigureAwait(false);
        }
    }

    /// <summary>What a cancelled run did, exactly: frames shown and presented, the PNG files written (the files on
    /// disk), whether the contact sheet was written, and the teardown.</summary>
    internal static string CancelledSummary(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        var c = CultureInfo.InvariantCulture;
        string teardown = "torn down: " + (result.Clean ? "clean (all dma-bufs released, no leaks)" : "NOT clean");
        string files = result.PngFiles.Count == 0
            ? string.Create(c, $"0 PNG files written to {o.OutputDirectory}")
            : string.Create(c, $"{result.PngFiles.Count} PNG file(s) written to {o.OutputDirectory} ({Path.GetFileName(result.PngFiles[0])}{(result.PngFiles.Count > 1 ? " to " + Path.GetFileName(result.PngFiles[^1]) : "")})");
        if (result.Cancelled)
        {
            return string.Create(c,
                $"cancelled after {result.FramesCompleted} of {o.Frames} frames: the display showed {result.FramesPresented}, the frontend saw {result.FramesCompleted} complete; {files}; no contact sheet; {teardown}");
        }
        var timing = result.CancelledTimingRun!;
        return string.Create(c,
            $"cancelled during the timing pass of {PathName(timing.Options)} (nothing written) after {timing.FramesCompleted} of {o.Frames} frames; the run itself was complete: {result.FramesCompleted} frames shown, {files}, contact sheet {result.ContactSheet ?? "none"}; {teardown}");
    }

    /// <summary>The run's summary as one JSON object (System.Text.Json source generation, <see cref="DemoJsonContext"/>).</summary>
    internal static string Json(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        var comparison = result.Comparison;
        var json = new DemoJson
        {
            Mode = o.Copy ? "copy" : "scanout",
            BackendDomain = o.BackendDomain == DemoBackendDomain.Dom0 ? "dom0" : "driver",
            BackendDomid = result.BackendDomainId,
            BackendDirectMapped = result.BackendDirectMapped,
            BeAlloc = o.BackendAllocated,
            Placement = o.Fragmented ? "fragmented" : "extents",
            Width = o.Width,
            Height = o.Height,
            Buffers = o.Buffers,
            FramesRequested = o.Frames,
            FramesShown = result.FramesCompleted,
            FramesPresented = result.FramesPresented,
            CpuBytesCopied = result.CpuBytesCopied,
            BounceBytes = result.BounceBytes,
            MappingErrors = result.MappingErrors,
            ZeroCopy = result.ZeroCopy,
            ZeroCopyFrames = result.ZeroCopyFrames,
            ScanoutSegments = result.ScanoutSegments,
            GrantOpsPerFrame = result.GrantOpsPerFrame,
            MicrosecondsPerFlip = Math.Round(result.MicrosecondsPerFlip, 1),
            ScanoutUsPerFlip = result.ScanoutRun is { FramesCompleted: > 0 } scan ? Math.Round(scan.MicrosecondsPerFlip, 1) : null,
            CopyUsPerFlip = result.CopyRun is { FramesCompleted: > 0 } copy ? Math.Round(copy.MicrosecondsPerFlip, 1) : null,
            CopyToScanoutRatio = result.CopyToScanoutRatio is { } ratio ? Math.Round(ratio, 3) : null,
            PngFiles = result.PngFiles.Count,
            PngsCompared = result.PngsCompared,
            PngsIdentical = result.PngsIdentical,
            ContactSheet = result.ContactSheet,
            Timed = Pass(result.TimedRun),
            Comparison = Pass(comparison),
            Cancelled = result.AnyCancelled,
            Clean = result.Clean,
            Leaks = result.Leaks.Count + (result.TimedRun?.Leaks.Count ?? 0) + (comparison?.Leaks.Count ?? 0),
            Advice = result.Advice,
        };
        return System.Text.Json.JsonSerializer.Serialize(json, DemoJsonContext.Relaxed.DemoJson);
    }

    private static DemoPassJson? Pass(DemoResult? run) => run is null ? null : new DemoPassJson
    {
        Mode = run.Options.Copy ? "copy" : "scanout",
        BeAlloc = run.Options.BackendAllocated,
        FramesShown = run.FramesCompleted,
        CpuBytesCopied = run.CpuBytesCopied,
        BounceBytes = run.BounceBytes,
        MappingErrors = run.MappingErrors,
        ZeroCopy = run.ZeroCopy,
        ZeroCopyFrames = run.ZeroCopyFrames,
        GrantOpsPerFrame = run.GrantOpsPerFrame,
        MicrosecondsPerFlip = Math.Round(run.MicrosecondsPerFlip, 1),
        Cancelled = run.Cancelled,
        Clean = run.Clean,
    };

    private static string Mode(DemoOptions o) =>
        (o.Copy ? "copy (GRANT_COPY)" : o.BackendAllocated ? "dma-buf scan-out, backend-allocated (be-alloc)" : "dma-buf scan-out") +
        (o.BackendDomain == DemoBackendDomain.Dom0 ? ", backend in dom0" : ", backend in a driver domain") + (o.Fragmented ? ", fragmented memory" : "");

    /// <summary>A display path's short name for a column head.</summary>
    private static string PathName(DemoOptions o) => o.Copy ? "GRANT_COPY" : o.BackendAllocated ? "dma-buf scan-out (be-alloc)" : "dma-buf scan-out";

    /// <summary>The summary tables of a finished run: the run itself, then the display path on both paths. Built to
    /// read well in 100 columns.</summary>
    internal static IReadOnlyList<Table> Tables(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        return [SummaryTable(result), DisplayPathTable(result)];
    }

    /// <summary>The run: where the backend ran, the device, the protocol, the frames, the teardown, the files.</summary>
    internal static Table SummaryTable(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        var c = CultureInfo.InvariantCulture;
        var table = new Table().Title(o.Copy ? "xenshare demo --copy: copying display path (displif + GRANT_COPY)"
            : o.BackendAllocated ? "xenshare demo --be-alloc: display path (displif, backend-allocated buffers, dma-buf scan-out)"
            : "xenshare demo: display path (displif, frontend-allocated buffers, dma-buf scan-out)");
        table.AddColumn(new TableColumn("").NoWrap());
        table.AddColumn("this run");
        void Row(string what, string value) => table.AddRow(new Text(what), new Text(value));

        Row("backend", string.Create(c, $"dom{result.BackendDomainId}, {(result.BackendDirectMapped ? "direct-mapped: its display sees machine addresses (Xen swiotlb)" : "a display driver domain: its display behind the SMMU sees guest-physical addresses")}; machine placement: {(o.Fragmented ? "fragmented" : "2 MiB extents")}"));
        Row("device", string.Create(c, $"{result.DevicePath} (be-alloc {(o.BackendAllocated ? 1 : 0)}); {(o.BackendAllocated ? "buffers: the backend's contiguous DMA memory, granted to domU (IMP_TO_REFS)" : "buffers: domU's pages, granted to the backend (EXP_FROM_REFS, WC)")}"));
        Row("xenbus states", "the backend's: " + (result.BackendStates.Length == 0 ? "-" : result.BackendStates));
        Row("requests", (result.Requests.Length == 0 ? "-" : result.Requests) + " (displif v2 on the shared ring; flip events on the event page)");
        Row("frame", string.Create(c, $"{o.Width}x{o.Height} XRGB8888, {o.FrameBytes:N0} B ({o.PagesPerBuffer} pages), {o.Buffers} buffer(s)"));
        Row("frames", string.Create(c, $"{result.FramesCompleted} shown"));
        Row("flips/s", string.Create(c, $"{result.FlipsPerSecond:0.0} (end to end: drawing, flip, display, PNG writing)"));
        Row("grant ops", string.Create(c, $"set-up {result.SetupGrantOps} (ring + event page + {o.PagesPerBuffer} per buffer, once); per frame {result.GrantOpsPerFrame}"));
        Row("µs per flip", result.FramesCompleted == 0 ? "-" : string.Create(c, $"{result.MicrosecondsPerFlip:0.0}: median, PNG time subtracted, files written around it (the table below times both paths writing none)"));
        Row("teardown", result.Clean ? "buffers released, leak check clean" : string.Create(c, $"NOT clean ({result.Leaks.Count + (result.TimedRun?.Leaks.Count ?? 0) + (result.Comparison?.Leaks.Count ?? 0)} leak finding(s))"));
        if (result.PngFiles.Count > 0)
        {
            Row("PNG files", string.Create(c, $"{result.PngFiles.Count} in {o.OutputDirectory}: {Path.GetFileName(result.PngFiles[0])}{(result.PngFiles.Count > 1 ? " to " + Path.GetFileName(result.PngFiles[^1]) : "")}"));
        }
        if (result.ContactSheet is not null) Row("contact sheet", result.ContactSheet + " (stamped with the mode and the counters)");
        return table;
    }

    /// <summary>The display path timed on both paths over the same frames (the two timing passes, writing nothing),
    /// with the ratio of the times per flip; without them, this run's display path alone.</summary>
    internal static Table DisplayPathTable(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var c = CultureInfo.InvariantCulture;
        var runs = result.TimingRuns;
        bool timed = result.TimedRun is not null;
        var table = new Table().Title(timed
            ? "display path timed on both paths: the same frames, nothing written (PNG work excluded)"
            : "display path (PNG writing excluded from the timing)");
        table.AddColumn(new TableColumn("").NoWrap());
        foreach (var run in runs) table.AddColumn(new TableColumn(PathName(run.Options)).RightAligned());
        void Row(string what, Func<DemoResult, string> value) => table.AddRow([new Text(what), .. runs.Select(r => new Text(value(r)))]);

        Row("frames shown", r => string.Create(c, $"{r.FramesCompleted}"));
        Row("µs per flip (median)", r => r.FramesCompleted == 0 ? "-" : string.Create(c, $"{r.MicrosecondsPerFlip:0.0}"));
        Row("CPU bytes copied per frame", r => string.Create(c, $"{r.CpuBytesPerFrame:N0}"));
        Row("grant ops per frame", r => string.Create(c, $"{r.GrantOpsPerFrame}"));
        Row("read in place by the display", r => r.Options.Copy ? "-" : string.Create(c, $"{r.ZeroCopyFrames} of {r.FramesCompleted} frames"));
        Row("DMA segments per buffer", r => r.Options.Copy || r.ScanoutSegments.Count == 0 ? "-" : string.Join(", ", r.ScanoutSegments));
        Row("swiotlb bounce bytes", r => r.Options.Copy ? "-" : string.Create(c, $"{r.BounceBytes:N0}"));
        Row("mapping errors", r => r.Options.Copy ? "-" : string.Create(c, $"{r.MappingErrors}"));
        Row("zero copy", r => r.ZeroCopy ? "yes" : r.Options.Copy ? "no: the backend copies every frame" : "no");
        Row("PNGs", r => ReferenceEquals(r, result)
            ? string.Create(c, $"{r.PngFiles.Count} written")
            : string.Create(c, $"{r.PngsEncoded} encoded, not written"));
        if (timed)
        {
            table.AddRow(new Text("PNGs byte-identical"), new Text(string.Create(c, $"{result.PngsIdentical} of {result.PngsCompared} (files, both passes)")));
        }
        if (result.CopyToScanoutRatio is { } ratio)
        {
            table.Caption(string.Create(c, $"GRANT_COPY takes {ratio:0.00} x the time per flip of dma-buf scan-out (medians, same frames, same run)"));
        }
        else if (!timed)
        {
            table.Caption("run without --no-compare to time both display paths over the same frames");
        }
        else if (result.ScanoutRun is { FramesCompleted: 0 })
        {
            table.Caption("no ratio: dma-buf scan-out showed no frame (see the mapping errors)");
        }
        return table;
    }

    /// <summary>The notes under the tables: what a real system would do, why the PNG files are the same in both modes,
    /// what the times per flip are.</summary>
    internal static IReadOnlyList<string> Notes(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var c = CultureInfo.InvariantCulture;
        var notes = new List<string>();
        if (result.Advice is { } advice) notes.Add("note: " + advice);
        if (result.ScanoutRun is { FramesCompleted: 0, MappingErrors: > 0 } && result.CopyRun is { FramesCompleted: > 0 } copied)
        {
            notes.Add(string.Create(c,
                $"note: GRANT_COPY showed all {copied.FramesCompleted} frames where the scan-out showed none: it copies every frame into the backend's own memory, which its display can always reach - at {copied.CpuBytesPerFrame:N0} CPU bytes per frame."));
        }
        if (result.TimedRun is not null && result.PngsCompared > 0)
        {
            if (result.PngsIdentical == result.PngsCompared && result.ScanoutRun is { } scan && result.CopyRun is { } copy)
            {
                notes.Add(string.Create(c,
                    $"note: the PNG files are the same in both modes, byte for byte ({result.PngsIdentical} of {result.PngsCompared} compared): the display gets the same pixels either way. What differs is who copies them: with dma-buf scan-out the display reads domU's framebuffer where it is ({scan.CpuBytesPerFrame:N0} CPU bytes copied per frame), with GRANT_COPY the backend first copies every frame into a buffer of its own ({copy.CpuBytesPerFrame:N0} bytes and {copy.GrantOpsPerFrame} grant copy operations per frame). The counters and the times per flip show the difference; the pictures cannot."));
            }
            else if (result.PngsIdentical != result.PngsCompared)
            {
                notes.Add(string.Create(c,
                    $"warning: {result.PngsCompared - result.PngsIdentical} of {result.PngsCompared} PNG files differ between the display paths: one of them changed pixels on the way to the display."));
            }
        }
        if (result.TimedRun is not null)
        {
            notes.Add("note: µs per flip is the display path as the frontend sees it, from its request until it saw the flip's completion, minus the time the display spent on the PNG and the thumbnail. The timing passes ran the same frames on both paths right after this run, each on a fresh emulated host in the same process, alike: each encoded the same PNGs, neither wrote a file.");
        }
        return notes;
    }
}
