using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using XenShare.Cli;
using XenShare.Cli.Commands;
using XenShare.Cli.Demo;

namespace XenShare.Tests.Demo;

/// <summary>Issue 13 item 5, "a tool that tells the truth", for the demo: both display paths timed alike in one run
/// over the same frames (PNG work excluded, nothing written) with their PNG files compared byte for byte, the contact sheet stamped with the
/// mode and the counters, and a cancelled run that reports exactly the files it left. Small frames; never asserts
/// speed.</summary>
public sealed class DemoTruthTests : IDisposable
{
    private static readonly TimeSpan Generous = TimeSpan.FromMinutes(2);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("xenshare-demo-truth-");

    public void Dispose()
    {
        try
        {
            _dir.Delete(recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private DemoOptions Options(string name, bool copy = false, bool beAlloc = false, int frames = 6, bool compare = true,
        DemoBackendDomain backend = DemoBackendDomain.Driver, bool fragmented = false, int width = 128, int height = 96) => new()
    {
        Width = width,
        Height = height,
        Frames = frames,
        Buffers = 2,
        Copy = copy,
        BackendAllocated = beAlloc,
        BackendDomain = backend,
        Fragmented = fragmented,
        Compare = compare,
        OutputDirectory = Path.Combine(_dir.FullName, name),
    };

    private static DemoResult Run(DemoOptions options, Action<int>? frameDone = null, Action<DemoOptions, int>? timingFrameDone = null, CancellationToken cancellationToken = default)
    {
        var task = Task.Run(() => DemoScene.Run(options, frameDone, timingFrameDone, cancellationToken), CancellationToken.None);
        Assert.True(task.Wait(Generous, CancellationToken.None), "the demo did not finish");
        return task.Result;
    }

    private static string Normalize(string text) => Regex.Replace(text, @"\s+", " ");

    /// <summary>Every entry of the folder, hidden ones included, by name.</summary>
    private static List<string> Entries(string folder) =>
        [.. Directory.EnumerateFileSystemEntries(folder).Select(e => Path.GetFileName(e)!).Order(StringComparer.Ordinal)];

    /// <summary>The zero-copy path and the copying one over the same frames, in one run: after the run itself, a
    /// timing pass of each, alike and writing nothing (PNG work excluded), the ratio of the two, the same PNG bytes
    /// everywhere, the counters that differ. With --be-alloc the GRANT_COPY pass runs frontend-allocated buffers (it
    /// reads the frontend's grants); after --copy the other path is zero copy.</summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public void OneRunTimesBothDisplayPathsOverTheSameFrames_AndTheirPngsAreByteIdentical(bool copy, bool beAlloc)
    {
        var o = Options(copy ? "copy" : beAlloc ? "be-alloc" : "zero", copy: copy, beAlloc: beAlloc);
        var timingFrames = new List<(bool Copy, int Done)>();
        var result = Run(o, timingFrameDone: (pass, n) => { lock (timingFrames) timingFrames.Add((pass.Copy, n)); });

        var timedRun = Assert.IsType<DemoResult>(result.TimedRun);
        var comparison = Assert.IsType<DemoResult>(result.Comparison);
        Assert.Equal(copy, timedRun.Options.Copy);
        Assert.Equal(beAlloc, timedRun.Options.BackendAllocated);
        Assert.Equal(!copy, comparison.Options.Copy);
        Assert.False(comparison.Options.BackendAllocated);
        Assert.Equal([.. Enumerable.Range(1, o.Frames).Select(n => (copy, n)), .. Enumerable.Range(1, o.Frames).Select(n => (!copy, n))], timingFrames);
        Assert.Equal(o.Frames, result.FramesCompleted);
        Assert.Equal(o.Frames, timedRun.FramesCompleted);
        Assert.Equal(o.Frames, comparison.FramesCompleted);
        Assert.Equal([timedRun, comparison], result.TimingRuns);

        var scan = Assert.IsType<DemoResult>(result.ScanoutRun);
        var grant = Assert.IsType<DemoResult>(result.CopyRun);
        Assert.Same(copy ? comparison : timedRun, scan);
        Assert.Same(copy ? timedRun : comparison, grant);
        Assert.True(scan.ZeroCopy);
        Assert.Equal(0, scan.CpuBytesCopied);
        Assert.Equal(0, scan.GrantOpsPerFrame);
        Assert.Equal(o.Frames * o.FrameBytes, grant.CpuBytesCopied);
        Assert.Equal(o.PagesPerBuffer, grant.GrantOpsPerFrame);
        Assert.False(grant.ZeroCopy);
        Assert.True(scan.MicrosecondsPerFlip > 0);
        Assert.True(grant.MicrosecondsPerFlip > 0);
        Assert.Equal(grant.MicrosecondsPerFlip / scan.MicrosecondsPerFlip, result.CopyToScanoutRatio!.Value, 9);

        // The same pixels reach the display either way: every PNG file of the run, encoded again from each timing
        // pass's frame, has the same bytes.
        Assert.Equal(o.Frames, result.PngsCompared);
        Assert.Equal(o.Frames, result.PngsIdentical);
        Assert.Equal(o.Frames, result.PngsEncoded);
        Assert.Equal(o.Frames, timedRun.PngsEncoded);
        Assert.Equal(o.Frames, comparison.PngsEncoded);
        Assert.Empty(timedRun.PngFiles);
        Assert.Empty(comparison.PngFiles);

        // The timing passes wrote nothing: the folder holds the run's frames, its contact sheet and the marker.
        Assert.Equal(
            [DemoOutputFolder.MarkerName, DemoOptions.ContactSheetFileName, .. Enumerable.Range(0, o.Frames).Select(DemoOptions.FrameFileName)],
            Entries(o.OutputDirectory));
        Assert.True(result.Clean);
        Assert.Empty(result.Leaks);
        Assert.Empty(timedRun.Leaks);
        Assert.Empty(comparison.Leaks);
        Assert.True(timedRun.Released);
        Assert.True(comparison.Released);

        using var json = JsonDocument.Parse(DemoCommand.Json(result));
        var root = json.RootElement;
        Assert.Equal(Math.Round(scan.MicrosecondsPerFlip, 1), root.GetProperty("scanout_us_per_flip").GetDouble());
        Assert.Equal(Math.Round(grant.MicrosecondsPerFlip, 1), root.GetProperty("copy_us_per_flip").GetDouble());
        Assert.Equal(Math.Round(result.CopyToScanoutRatio.Value, 3), root.GetProperty("copy_to_scanout_ratio").GetDouble());
        Assert.Equal(o.Frames, root.GetProperty("pngs_compared").GetInt32());
        Assert.Equal(o.Frames, root.GetProperty("pngs_identical").GetInt32());
        Assert.Equal(copy ? "copy" : "scanout", root.GetProperty("timed").GetProperty("mode").GetString());
        var jsonComparison = root.GetProperty("comparison");
        Assert.Equal(copy ? "scanout" : "copy", jsonComparison.GetProperty("mode").GetString());
        Assert.Equal(comparison.CpuBytesCopied, jsonComparison.GetProperty("cpu_bytes_copied").GetInt64());
        Assert.True(jsonComparison.GetProperty("clean").GetBoolean());

        string text = Normalize(CliConsole.Render(DemoCommand.DisplayPathTable(result)) + " " + string.Join(" ", DemoCommand.Notes(result)));
        Assert.Contains("display path timed on both paths", text, StringComparison.Ordinal);
        Assert.Contains("PNGs byte-identical", text, StringComparison.Ordinal);
        Assert.Contains("GRANT_COPY takes " + result.CopyToScanoutRatio.Value.ToString("0.00", CultureInfo.InvariantCulture) + " x the time per flip", text, StringComparison.Ordinal);
        Assert.Contains($"byte for byte ({o.Frames} of {o.Frames} compared)", text, StringComparison.Ordinal);
        Assert.Contains("who copies them", text, StringComparison.Ordinal);
    }

    /// <summary>Where zero copy is impossible (dom0's display cannot map 640x480 scattered buffers), the comparison
    /// still shows every frame by GRANT_COPY; there is no ratio, and the output says why.</summary>
    [Fact]
    public void WhereTheDisplayCannotMapTheBuffers_TheComparisonShowsWhatCopyingDoes()
    {
        var o = Options("dom0-large", frames: 3, backend: DemoBackendDomain.Dom0, fragmented: true, width: 640, height: 480);
        var result = Run(o);
        Assert.Equal(0, result.FramesCompleted);
        Assert.Equal(o.Buffers, result.MappingErrors);
        Assert.Equal(o.Buffers, Assert.IsType<DemoResult>(result.TimedRun).MappingErrors);
        var comparison = Assert.IsType<DemoResult>(result.Comparison);
        Assert.Equal(o.Frames, comparison.FramesCompleted);
        Assert.Equal(o.Frames * o.FrameBytes, comparison.CpuBytesCopied);
        Assert.Null(result.CopyToScanoutRatio);
        Assert.Equal(0, result.PngsCompared);
        Assert.Equal(o.Frames, comparison.PngsEncoded);
        string text = Normalize(CliConsole.Render(DemoCommand.DisplayPathTable(result)) + " " + string.Join(" ", DemoCommand.Notes(result)));
        Assert.Contains("no ratio: dma-buf scan-out showed no frame", text, StringComparison.Ordinal);
        Assert.Contains($"GRANT_COPY showed all {o.Frames} frames where the scan-out showed none", text, StringComparison.Ordinal);
        Assert.Contains("--backend-domain driver", text, StringComparison.Ordinal);
        Assert.True(result.Clean);
        Assert.Empty(comparison.Leaks);
    }

    /// <summary>Without the comparison there is one path and no ratio, and the table says how to get one.</summary>
    [Fact]
    public void WithoutTheComparisonThereIsNoRatio()
    {
        var o = Options("no-compare", compare: false, frames: 2);
        var result = Run(o);
        Assert.Null(result.TimedRun);
        Assert.Null(result.Comparison);
        Assert.Same(result, result.ScanoutRun);
        Assert.Null(result.CopyRun);
        Assert.Null(result.CopyToScanoutRatio);
        Assert.Equal(0, result.PngsCompared);
        using var json = JsonDocument.Parse(DemoCommand.Json(result));
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("timed").ValueKind);
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("comparison").ValueKind);
        Assert.Equal(JsonValueKind.Null, json.RootElement.GetProperty("copy_to_scanout_ratio").ValueKind);
        Assert.Contains("run without --no-compare", Normalize(CliConsole.Render(DemoCommand.DisplayPathTable(result))), StringComparison.Ordinal);
        Assert.Empty(result.Leaks);
    }

    /// <summary>The contact sheet carries the run's mode and counters, and its pixels show exactly that text: zero
    /// copy in a driver domain, GRANT_COPY, and dom0 bouncing small buffers (not zero copy).</summary>
    [Theory]
    [InlineData("zero")]
    [InlineData("copy")]
    [InlineData("bounced")]
    public void TheContactSheetIsStampedWithTheModeAndTheCounters(string mode)
    {
        var o = mode switch
        {
            "copy" => Options("stamp-copy", copy: true, compare: false, frames: 4),
            "bounced" => Options("stamp-bounced", compare: false, frames: 4, backend: DemoBackendDomain.Dom0, fragmented: true, width: 128, height: 128),
            _ => Options("stamp-zero", compare: false, frames: 4),
        };
        var result = Run(o);
        Assert.Equal(o.Frames, result.FramesCompleted);
        string caption = Normalize(string.Join(" ", result.ContactSheetCaption));
        var c = CultureInfo.InvariantCulture;
        Assert.Contains(mode switch
        {
            "copy" => "mode: copy (GRANT_COPY)",
            "bounced" => "mode: dma-buf scan-out, not zero copy",
            _ => "mode: zero-copy (dma-buf scan-out)",
        }, caption, StringComparison.Ordinal);
        Assert.Contains(mode == "bounced" ? "backend: dom0 (direct-mapped)" : "backend: dom2 (driver domain)", caption, StringComparison.Ordinal);
        Assert.Contains("fe-alloc", caption, StringComparison.Ordinal);
        Assert.Contains(string.Create(c, $"frames shown: {o.Frames}"), caption, StringComparison.Ordinal);
        Assert.Contains(string.Create(c, $"CPU bytes copied: {result.CpuBytesCopied:N0}"), caption, StringComparison.Ordinal);
        Assert.Contains(string.Create(c, $"bounce bytes: {result.BounceBytes:N0}"), caption, StringComparison.Ordinal);
        Assert.Contains("mapping errors: 0", caption, StringComparison.Ordinal);
        Assert.Equal(mode == "copy" ? o.Frames * o.FrameBytes : mode == "bounced" ? result.BounceBytes : 0, result.CpuBytesCopied);
        if (mode == "bounced") Assert.True(result.BounceBytes > 0);

        // The PNG shows these lines: where the font has ink, the label colour; around it, the background.
        var image = PngDecoder.DecodeFile(Assert.IsType<string>(result.ContactSheet));
        var sheet = new ContactSheet(o.Width, o.Height, Math.Min(o.Frames, o.ContactSheetFrames), columns: 4, thumbnailWidth: Math.Min(320, o.Width));
        sheet.SetCaption(DemoScene.Stamp(result));
        Assert.Equal(result.ContactSheetCaption, sheet.CaptionLines);
        Assert.Equal(sheet.Width, image.Width);
        Assert.Equal(sheet.ImageHeight, image.Height);
        int scale = sheet.CaptionScale;
        for (int line = 0; line < sheet.CaptionLines.Count; line++)
        {
            string text = sheet.CaptionLines[line];
            (int x0, int y0) = sheet.GetCaptionOrigin(line);
            for (int y = 0; y < TinyFont.GlyphHeight * scale; y++)
            {
                for (int x = 0; x < TinyFont.MeasureWidth(text.Length, scale); x++)
                {
                    uint expected = TinyFont.IsInk(text, x, y, scale) ? ContactSheet.LabelColor : ContactSheet.BackgroundColor;
                    Assert.True(expected == image.GetRgb(x0 + x, y0 + y), $"caption line {line} '{text}' pixel ({x},{y})");
                }
            }
        }
        Assert.Empty(result.Leaks);
    }

    /// <summary>A run stopped mid-way says exactly what it left: the frames the display showed, the PNG files on disk
    /// (all complete, none under a temporary name, each listed in the marker), no contact sheet, no comparison.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void ACancelledRunReportsExactlyTheFilesOnDisk(int pngEvery)
    {
        var o = Options("cancelled-" + pngEvery, frames: 100_000, compare: pngEvery == 1) with { PngEvery = pngEvery };
        using var cts = new CancellationTokenSource();
        var result = Run(o, n => { if (n == 7) cts.Cancel(); }, cancellationToken: cts.Token);

        Assert.True(result.Cancelled);
        Assert.True(result.AnyCancelled);
        Assert.Null(result.TimedRun);
        Assert.Null(result.Comparison);
        Assert.Null(result.ContactSheet);
        Assert.InRange(result.FramesCompleted, 7, o.Frames - 1);
        Assert.InRange(result.FramesPresented, result.FramesCompleted, result.FramesCompleted + 1);

        // Exactly the frames the display showed that get a file, each complete, each listed in the marker.
        var expected = Enumerable.Range(0, result.FramesPresented).Where(o.WritesPng).Select(DemoOptions.FrameFileName).ToList();
        Assert.Equal(expected, result.PngFiles.Select(p => Path.GetFileName(p)!));
        Assert.Equal([DemoOutputFolder.MarkerName, .. expected], Entries(o.OutputDirectory));
        foreach (string file in result.PngFiles)
        {
            var image = PngDecoder.DecodeFile(file);
            Assert.Equal((o.Width, o.Height), (image.Width, image.Height));
        }
        Assert.Equal([DemoOutputFolder.MarkerHeader, .. expected], File.ReadAllLines(Path.Combine(o.OutputDirectory, DemoOutputFolder.MarkerName)));

        string summary = DemoCommand.CancelledSummary(result);
        Assert.Contains($"cancelled after {result.FramesCompleted} of {o.Frames} frames", summary, StringComparison.Ordinal);
        Assert.Contains($"the display showed {result.FramesPresented}", summary, StringComparison.Ordinal);
        Assert.Contains($"{expected.Count} PNG file(s) written", summary, StringComparison.Ordinal);
        Assert.Contains($"{expected[0]} to {expected[^1]}", summary, StringComparison.Ordinal);
        Assert.Contains("no contact sheet", summary, StringComparison.Ordinal);
        Assert.Contains("torn down: clean", summary, StringComparison.Ordinal);
        Assert.True(result.Released);
        Assert.Empty(result.Leaks);
    }

    /// <summary>Stopped during a timing pass: the run itself is complete (every file, the contact sheet), the timing
    /// passes wrote nothing, and the summary says which pass was stopped.</summary>
    [Fact]
    public void ACancelledTimingPassKeepsTheCompleteRunAndSaysSo()
    {
        var o = Options("cancelled-timing", frames: 200);
        using var cts = new CancellationTokenSource();
        var result = Run(o, timingFrameDone: (pass, n) => { if (pass.Copy && n == 3) cts.Cancel(); }, cancellationToken: cts.Token);

        Assert.False(result.Cancelled);
        Assert.True(result.AnyCancelled);
        Assert.False(Assert.IsType<DemoResult>(result.TimedRun).Cancelled);
        var comparison = Assert.IsType<DemoResult>(result.Comparison);
        Assert.True(comparison.Cancelled);
        Assert.Same(comparison, result.CancelledTimingRun);
        Assert.InRange(comparison.FramesCompleted, 3, o.Frames - 1);
        Assert.Equal(o.Frames, result.PngFiles.Count);
        Assert.Equal(
            [DemoOutputFolder.MarkerName, DemoOptions.ContactSheetFileName, .. Enumerable.Range(0, o.Frames).Select(DemoOptions.FrameFileName)],
            Entries(o.OutputDirectory));
        string summary = DemoCommand.CancelledSummary(result);
        Assert.Contains("cancelled during the timing pass of GRANT_COPY (nothing written)", summary, StringComparison.Ordinal);
        Assert.Contains($"after {comparison.FramesCompleted} of {o.Frames} frames", summary, StringComparison.Ordinal);
        Assert.Contains($"the run itself was complete: {o.Frames} frames shown, {o.Frames} PNG file(s) written", summary, StringComparison.Ordinal);
        Assert.True(result.Clean);
        Assert.Empty(comparison.Leaks);
    }

    /// <summary>The hash the demo compares is the hash of the bytes it wrote.</summary>
    [Fact]
    public void HashingStreamHashesWhatPassesThrough()
    {
        byte[] data = new byte[100_000];
        new Random(7).NextBytes(data);
        using var inner = new MemoryStream();
        using var hashing = new HashingStream(inner);
        hashing.Write(data, 0, 10);
        hashing.Write(data.AsSpan(10));
        Assert.Equal(data, inner.ToArray());
        Assert.Equal(data.Length, hashing.Length);
        Assert.Equal(System.IO.Hashing.XxHash3.HashToUInt64(data), hashing.Hash);
        using var discard = new HashingStream();
        discard.Write(data);
        Assert.Equal(hashing.Hash, discard.Hash);
    }
}
