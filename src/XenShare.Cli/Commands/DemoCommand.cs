using System.CommandLine;
using System.Globalization;
using Spectre.Console;
using XenShare.Cli.Demo;

namespace XenShare.Cli.Commands;

/// <summary><c>xenshare demo [--width W] [--height H] [--frames N] [--buffers B] [--out DIR] [--copy] [--png-every K]</c>:
/// a para-virtual display on the embedded emulated host. domU draws animated frames into granted framebuffers and
/// asks for page flips over a shared ring and an event channel; dom0 exports each framebuffer once as a
/// write-combining dma-buf, a scan-out engine maps it as one contiguous segment, and every flip is scanned out
/// through its DMA address into a PNG file, with no CPU copy. <c>--copy</c> runs the same scene over GRANT_COPY.</summary>
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
        var width = new Option<int>("--width") { Description = $"Frame width in pixels: even, {DemoOptions.MinDimension} to {DemoOptions.MaxWidth}.", DefaultValueFactory = _ => defaults.Width };
        var height = new Option<int>("--height") { Description = $"Frame height in pixels: even, {DemoOptions.MinDimension} to {DemoOptions.MaxHeight}.", DefaultValueFactory = _ => defaults.Height };
        var frames = new Option<int>("--frames") { Description = "Frames to show (page flips).", DefaultValueFactory = _ => defaults.Frames };
        var buffers = new Option<int>("--buffers") { Description = $"Framebuffers the guest cycles through (1 to {DemoOptions.MaxBuffers}).", DefaultValueFactory = _ => defaults.Buffers };
        var output = new Option<string>("--out") { Description = "Output folder for frame_NNNN.png and contact_sheet.png.", DefaultValueFactory = _ => defaults.OutputDirectory };
        var copy = new Option<bool>("--copy") { Description = "Use the copying path (GRANT_COPY of every frame into a dom0 buffer) instead of zero-copy dma-buf scan-out, for comparison." };
        var pngEvery = new Option<int>("--png-every") { Description = "Write the PNG of every N-th frame only (the last frame is always written).", DefaultValueFactory = _ => 1 };

        var command = new Command("demo", "The main job: a zero-copy para-virtual display on the emulated Xen host. domU draws frames into granted buffers and requests page flips over a shared ring + event channel; dom0 exports each buffer once as a WC dma-buf, a scan-out engine maps it as one contiguous segment and scans every flip out through its DMA address into a PNG file. Prints a summary table and writes a contact sheet.");
        foreach (var option in new Option[] { width, height, frames, buffers, output, copy, pngEvery }) command.Options.Add(option);
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
                PngEvery = parseResult.GetValue(pngEvery),
            };
            return await RunAsync(options, parseResult.InvocationConfiguration.Output, parseResult.InvocationConfiguration.Error, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    /// <summary>Validates, runs the scene with a progress bar, prints the summary; returns the exit code.</summary>
    internal static async Task<int> RunAsync(DemoOptions options, TextWriter output, TextWriter error, CancellationToken cancellationToken)
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
        string mode = options.Copy ? "copy (GRANT_COPY)" : "zero-copy (dma-buf scan-out)";
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
                        var run = Task.Run(() => DemoScene.Run(options, done => task.Value = done, cancellationToken), CancellationToken.None);
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
                await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture, $"rendering {options.Frames} frames of {options.Width}x{options.Height}, {mode}, into {options.OutputDirectory} ...")).ConfigureAwait(false);
                result = await Task.Run(() => DemoScene.Run(options, null, cancellationToken), CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException or IOException or UnauthorizedAccessException or XenShare.Api.XenShareException)
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

        console.Write(SummaryTable(result));
        if (!result.Clean)
        {
            await WriteLeaksAsync(error, result).ConfigureAwait(false);
            return UncleanExitCode;
        }
        return 0;
    }

    private static async Task WriteLeaksAsync(TextWriter error, DemoResult result)
    {
        if (!result.Released) await error.WriteLineAsync("demo: an exported dma-buf was not released in time").ConfigureAwait(false);
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

    /// <summary>The summary table of a finished run.</summary>
    internal static Table SummaryTable(DemoResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        var c = CultureInfo.InvariantCulture;
        var table = new Table().Title(o.Copy ? "xenshare demo --copy: copying display path (GRANT_COPY)" : "xenshare demo: zero-copy display path (dma-buf scan-out)");
        table.AddColumns("", "this run", "for comparison");
        string other = o.Copy ? "zero-copy" : "--copy";
        void Row(string what, string value, string comparison = "") => table.AddRow(new Text(what), new Text(value), new Text(comparison));

        Row("frame", string.Create(c, $"{o.Width}x{o.Height} XRGB8888, {o.FrameBytes:N0} B ({o.PagesPerBuffer} pages), {o.Buffers} buffer(s)"));
        Row("frames", string.Create(c, $"{result.FramesCompleted}"));
        Row("flips/s", string.Create(c, $"{result.FlipsPerSecond:0.0}"), "end to end: drawing, flip, scan-out, PNG writing");
        Row("µs per flip (median)", string.Create(c, $"{result.MicrosecondsPerFlip:0.0}"), o.Copy ? "display path: ring + event + GRANT_COPY (PNG excluded)" : "display path: ring + event + flip (PNG excluded)");
        Row("grant ops per frame", string.Create(c, $"{result.GrantOpsPerFrame}"), string.Create(c, $"set-up: {result.SetupGrantOps} (ring map{(o.Copy ? "" : $" + {o.PagesPerBuffer} maps per buffer, once")}); {other}: {(o.Copy ? 0 : o.PagesPerBuffer)} per frame"));
        Row("CPU bytes copied (display path)", string.Create(c, $"{result.CpuBytesPerFrame:N0} B/frame ({result.CpuBytesCopied:N0} B total)"), string.Create(c, $"{other}: {result.OtherModeCpuBytesPerFrame:N0} B/frame (computed: {(o.Copy ? "0" : "width x height x 4")})"));
        if (!o.Copy)
        {
            string segments = result.ScanoutSegments.Count == 0 ? "-" : string.Join(", ", result.ScanoutSegments);
            Row("scan-out", string.Create(c, $"{result.ZeroCopyFrames} of {result.FramesCompleted} frames read in place"), $"DMA segments per buffer: {segments}");
        }
        Row("teardown", result.Clean ? "dma-bufs released, leak check clean" : "NOT clean", result.Leaks.Count == 0 ? "" : string.Create(c, $"{result.Leaks.Count} leak finding(s)"));
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
