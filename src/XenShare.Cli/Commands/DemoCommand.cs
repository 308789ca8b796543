using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using XenShare.Cli.Demo;

namespace XenShare.Cli.Commands;

/// <summary><c>xenshare demo [--width W] [--height H] [--frames N] [--buffers B] [--out DIR] [--be-alloc] [--copy] [--png-every K]</c>:
/// a para-virtual display (displif) on the embedded emulated host. The toolstack writes the vdispl device in the
/// emulated xenstore; domU's frontend and dom0's backend (the library's DisplifFrontend and DisplifBackend) walk
/// the xenbus states to Connected; domU draws animated frames into its framebuffers and shows them with
/// SET_CONFIG and PG_FLIP; dom0 hands each framebuffer's dma-buf to the emulated scan-out engine, which scans
/// every frame out in place into a PNG file, with no CPU copy. <c>--be-alloc</c>: dom0 allocates the
/// framebuffers (contiguous DMA memory) and grants them to domU. <c>--copy</c> runs the same scene with a
/// GRANT_COPY display instead.</summary>
internal static class DemoCommand
{
    /// <summary>Exit code of a run stopped by Ctrl+C (128 + SIGINT).</summary>
    public const int CancelledExitCode = 130;

    /// <summary>Exit code of bad options or a failed run.</summary>
    public const int ErrorExitCode = 1;

    /// <summary>Exit code of a run whose teardown was not clean (leaks, or a dma-buf not released).</summary>
    public const int UncleanExitCode = 2;

    /// <summary>Creates the <c>demo</c> command.</summary>
    public static Command Create()
    {
        var defaults = new DemoOptions();
        var width = new Option<int>("--width") { CustomParser = r => WholeNumber(r, "--width", defaults.Width), Description = $"Frame width in pixels: even, {DemoOptions.MinDimension} to {DemoOptions.MaxWidth}.", DefaultValueFactory = _ => defaults.Width };
        var height = new Option<int>("--height") { CustomParser = r => WholeNumber(r, "--height", defaults.Height), Description = $"Frame height in pixels: even, {DemoOptions.MinDimension} to {DemoOptions.MaxHeight}.", DefaultValueFactory = _ => defaults.Height };
        var frames = new Option<int>("--frames") { CustomParser = r => WholeNumber(r, "--frames", defaults.Frames), Description = "Frames to show (page flips).", DefaultValueFactory = _ => defaults.Frames };
        var buffers = new Option<int>("--buffers") { CustomParser = r => WholeNumber(r, "--buffers", defaults.Buffers), Description = $"Framebuffers the guest cycles through (1 to {DemoOptions.MaxBuffers}).", DefaultValueFactory = _ => defaults.Buffers };
        var output = new Option<string>("--out") { Description = "Output folder for frame_NNNN.png and contact_sheet.png.", DefaultValueFactory = _ => defaults.OutputDirectory };
        var copy = new Option<bool>("--copy") { Description = "Use the copying path (GRANT_COPY of every frame into a dom0 buffer) instead of zero-copy dma-buf scan-out, for comparison." };
        var beAlloc = new Option<bool>("--be-alloc") { Description = "Backend-allocated framebuffers (be-alloc = 1): dom0 allocates contiguous DMA memory, grants it to domU (IMP_TO_REFS), domU maps it and draws into it." };
        var pngEvery = new Option<int>("--png-every") { CustomParser = r => WholeNumber(r, "--png-every", 1), Description = "Write the PNG of every N-th frame only (the last frame is always written).", DefaultValueFactory = _ => 1 };
        var backendDomain = new Option<string>("--backend-domain") { Description = "Where the display backend and its display run: 'driver' (default: a display driver domain, not direct-mapped, its display behind the SMMU, as zero-copy display backends run on Arm) or 'dom0' (direct-mapped: its display sees machine addresses through the Xen swiotlb).", DefaultValueFactory = _ => "driver" };
        backendDomain.AcceptOnlyFromAmong("driver", "dom0");
        var fragmented = new Option<bool>("--fragmented") { Description = "Place machine memory deliberately fragmented (no two consecutive guest frames of a domU are machine-consecutive) instead of Xen's 2 MiB extents." };
        var json = new Option<bool>("--json") { Description = "Print the run's summary as one JSON object (frames_shown, cpu_bytes_copied, bounce_bytes, mapping_errors, ...) instead of the table." };

        var command = new Command("demo", "The main job: a para-virtual display (displif, xen/io/displif.h) on the emulated Xen host. The toolstack writes the vdispl device in xenstore; domU's frontend and the backend (in a display driver domain, or dom0 with --backend-domain dom0) walk the xenbus states to Connected; domU draws frames into its framebuffers and shows them with SET_CONFIG and PG_FLIP; the backend hands each framebuffer's dma-buf to its display device, which maps it as Linux on Xen would (in place, bounced, or refused) and scans every frame out into a PNG file. Prints a summary table (or --json) with the copies and mapping errors, and writes a contact sheet.");
        foreach (var option in new Option[] { width, height, frames, buffers, output, beAlloc, copy, pngEvery, backendDomain, fragmented, json }) command.Options.Add(option);
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

    /// <summary>Validates, runs the scene with a progress bar, prints the summary; returns the exit code.</summary>
    internal static async Task<int> RunAsync(DemoOptions options, TextWriter output, TextWriter error, CancellationToken cancellationToken, bool json = false)
    {
        var problems = options.Validate();
        string? outProblem = problems.Count == 0 ? options.CheckOutputDirectory() : null;
        if (outProblem is not null) problems = [.. problems, outProblem];
        if (problems.Count > 0)
        {
            foreach (string p in problems) await error.WriteLineAsync("demo: " + p).ConfigureAwait(false);
            return ErrorExitCode;
        }

        var console = CreateConsole(output, out bool interactive);
        interactive &= !json;
        string mode = Mode(options);
        DemoResult result;
        try
        {
            if (interactive)
            {
                result = await console.Progress()
                    .AutoClear(false)
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                    .StartAsync(async ctx =>
                    {
                        var task = ctx.AddTask($"{options.Width}x{options.Height} {mode}", maxValue: options.Frames);
                        var run = Task.Run(() => DemoScene.RunAsync(options, done => task.Value = done, cancellationToken), CancellationToken.None);
                        while (!run.IsCompleted)
                        {
                            await Task.WhenAny(run, Task.Delay(100, CancellationToken.None)).ConfigureAwait(false);
                            ctx.Refresh();
                        }
                        return await run.ConfigureAwait(false);
                    }).ConfigureAwait(false);
            }
            else
            {
                if (!json) await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"rendering {options.Frames} frames of {options.Width}x{options.Height}, {mode}, into {options.OutputDirectory} ...")).ConfigureAwait(false);
                result = await Task.Run(() => DemoScene.RunAsync(options, null, cancellationToken), CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException or UnauthorizedAccessException or XenShare.Api.XenShareException
            or XenShare.Displif.DisplifRequestException or XenShare.Xenstore.XenstoreException)
        {
            await error.WriteLineAsync("demo failed: " + e.Message + (e.InnerException is { } inner ? Environment.NewLine + "  " + inner : "")).ConfigureAwait(false);
            return ErrorExitCode;
        }

        if (result.Cancelled)
        {
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"cancelled after {result.FramesCompleted} of {options.Frames} frames; torn down: {(result.Clean ? "clean (all dma-bufs released, no leaks)" : "NOT clean")}")).ConfigureAwait(false);
            await WriteLeaksAsync(error, result).ConfigureAwait(false);
            return CancelledExitCode;
        }

        if (json) await output.WriteLineAsync(Json(result)).ConfigureAwait(false);
        else
        {
            console.Write(SummaryTable(result));
            if (result.Advice is { } advice) await output.WriteLineAsync("note: " + advice).ConfigureAwait(false);
        }
        if (!result.Clean)
        {
            await WriteLeaksAsync(error, result).ConfigureAwait(false);
            return UncleanExitCode;
        }
        return 0;
    }

    private static async Task WriteLeaksAsync(TextWriter error, DemoResult result)
    {
        if (!result.Released) await error.WriteLineAsync("demo: a framebuffer was not released in time (DBUF_DESTROY answered an error)").ConfigureAwait(false);
        foreach (string leak in result.Leaks) await error.WriteLineAsync("demo: leak: " + leak).ConfigureAwait(false);
    }

    private static IAnsiConsole CreateConsole(TextWriter output, out bool interactive)
    {
        var consoleOutput = new AnsiConsoleOutput(output);
        interactive = consoleOutput.IsTerminal;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = consoleOutput,
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!interactive) console.Profile.Width = 160;
        return console;
    }

    /// <summary>The run's summary as one JSON object (written by hand: the trimmed tool uses no reflection).</summary>
    internal static string Json(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        using var stream = new MemoryStream();
        using (var w = new System.Text.Json.Utf8JsonWriter(stream))
        {
            w.WriteStartObject();
            w.WriteString("mode", o.Copy ? "copy" : "scanout");
            w.WriteString("backend_domain", o.BackendDomain == DemoBackendDomain.Dom0 ? "dom0" : "driver");
            w.WriteNumber("backend_domid", result.BackendDomainId);
            w.WriteBoolean("backend_direct_mapped", result.BackendDirectMapped);
            w.WriteBoolean("be_alloc", o.BackendAllocated);
            w.WriteString("placement", o.Fragmented ? "fragmented" : "extents");
            w.WriteNumber("width", o.Width);
            w.WriteNumber("height", o.Height);
            w.WriteNumber("buffers", o.Buffers);
            w.WriteNumber("frames_requested", o.Frames);
            w.WriteNumber("frames_shown", result.FramesCompleted);
            w.WriteNumber("cpu_bytes_copied", result.CpuBytesCopied);
            w.WriteNumber("bounce_bytes", result.BounceBytes);
            w.WriteNumber("mapping_errors", result.MappingErrors);
            w.WriteBoolean("zero_copy", result.ZeroCopy);
            w.WriteNumber("zero_copy_frames", result.ZeroCopyFrames);
            w.WriteStartArray("scanout_segments");
            foreach (int n in result.ScanoutSegments) w.WriteNumberValue(n);
            w.WriteEndArray();
            w.WriteNumber("grant_ops_per_frame", result.GrantOpsPerFrame);
            w.WriteNumber("microseconds_per_flip", Math.Round(result.MicrosecondsPerFlip, 1));
            w.WriteNumber("png_files", result.PngFiles.Count);
            w.WriteBoolean("cancelled", result.Cancelled);
            w.WriteBoolean("clean", result.Clean);
            w.WriteNumber("leaks", result.Leaks.Count);
            if (result.Advice is { } advice) w.WriteString("advice", advice);
            else w.WriteNull("advice");
            w.WriteEndObject();
        }
        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static string Mode(DemoOptions o) =>
        (o.Copy ? "copy (GRANT_COPY)" : o.BackendAllocated ? "dma-buf scan-out, backend-allocated (be-alloc)" : "dma-buf scan-out") +
        (o.BackendDomain == DemoBackendDomain.Dom0 ? ", backend in dom0" : ", backend in a driver domain") + (o.Fragmented ? ", fragmented memory" : "");

    /// <summary>The summary table of a finished run.</summary>
    internal static Table SummaryTable(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        var c = CultureInfo.InvariantCulture;
        var table = new Table().Title(o.Copy ? "xenshare demo --copy: copying display path (displif + GRANT_COPY)"
            : o.BackendAllocated ? "xenshare demo --be-alloc: display path (displif, backend-allocated buffers, dma-buf scan-out)"
            : "xenshare demo: display path (displif, frontend-allocated buffers, dma-buf scan-out)");
        table.AddColumns("", "this run", "for comparison");
        string other = o.Copy ? "zero-copy" : "--copy";
        void Row(string what, string value, string comparison = "") => table.AddRow(new Text(what), new Text(value), new Text(comparison));

        Row("backend", string.Create(c, $"dom{result.BackendDomainId} ({(result.BackendDirectMapped ? "direct-mapped: its display sees machine addresses, Xen swiotlb" : "a display driver domain: its display behind the SMMU sees guest-physical addresses")}); machine placement: {(o.Fragmented ? "fragmented" : "2 MiB extents")}"),
            o.BackendDomain == DemoBackendDomain.Dom0 ? "--backend-domain driver: the display in a driver domain" : "--backend-domain dom0: the display in dom0");
        Row("device", string.Create(c, $"{result.DevicePath} (be-alloc {(o.BackendAllocated ? 1 : 0)}); the backend's xenbus states: {result.BackendStates}"),
            o.BackendAllocated ? "buffers: the backend's contiguous DMA memory, granted to domU (IMP_TO_REFS)" : "buffers: domU's pages, granted to the backend (EXP_FROM_REFS, WC)");
        Row("requests", result.Requests.Length == 0 ? "-" : result.Requests, "displif v2 on the shared ring; flip events on the event page");
        Row("frame", string.Create(c, $"{o.Width}x{o.Height} XRGB8888, {o.FrameBytes:N0} B ({o.PagesPerBuffer} pages), {o.Buffers} buffer(s)"));
        Row("frames", string.Create(c, $"{result.FramesCompleted}"));
        Row("flips/s", string.Create(c, $"{result.FlipsPerSecond:0.0}"), "end to end: drawing, flip, scan-out, PNG writing");
        Row("µs per flip (median)", string.Create(c, $"{result.MicrosecondsPerFlip:0.0}"),
            o.Copy ? "request -> backend -> GRANT_COPY -> flip event -> frontend (PNG excluded)" : "request -> backend -> latch -> flip event -> frontend (PNG excluded)");
        Row("grant ops per frame", string.Create(c, $"{result.GrantOpsPerFrame}"), string.Create(c, $"set-up: {result.SetupGrantOps} (ring + event page + {o.PagesPerBuffer} per buffer, once); {other}: {(o.Copy ? 0 : o.PagesPerBuffer)} per frame"));
        Row("CPU bytes copied (display path)", string.Create(c, $"{result.CpuBytesPerFrame:N0} B/frame ({result.CpuBytesCopied:N0} B total)"), string.Create(c, $"{other}: {result.OtherModeCpuBytesPerFrame:N0} B/frame (computed: {(o.Copy ? "0" : "width x height x 4")})"));
        if (!o.Copy)
        {
            string segments = result.ScanoutSegments.Count == 0 ? "-" : string.Join(", ", result.ScanoutSegments);
            Row("scan-out", string.Create(c, $"{result.ZeroCopyFrames} of {result.FramesCompleted} frames read in place"), $"DMA segments per buffer: {segments}");
            Row("swiotlb bounce bytes", string.Create(c, $"{result.BounceBytes:N0}"), "copies a direct-mapped domain makes for scattered buffers (at most 256 KiB each)");
            Row("mapping errors", string.Create(c, $"{result.MappingErrors}"), "framebuffers the display could not map (ENOMEM)");
            Row("zero copy", result.ZeroCopy ? "yes: no byte copied on the way to the display" : "no", "");
        }
        Row("teardown", result.Clean ? "buffers released, leak check clean" : "NOT clean", result.Leaks.Count == 0 ? "" : string.Create(c, $"{result.Leaks.Count} leak finding(s)"));
        if (result.PngFiles.Count > 0)
        {
            Row("PNG files", string.Create(c, $"{result.PngFiles.Count} in {o.OutputDirectory}"));
            Row("  first", result.PngFiles[0]);
            Row("  last", result.PngFiles[^1]);
        }
        if (result.ContactSheet is not null) Row("contact sheet", result.ContactSheet);
        return table;
    }
}
