using System.CommandLine;
using XenShare.Cli.Commands;
using XenShare.Cli.Demo;

namespace XenShare.Tests.Demo;

/// <summary>The demo scene in-process at a small size, on the displif protocol (the library's frontend and backend
/// meeting through the emulated xenstore), with frontend- and backend-allocated buffers: frames on disk with the
/// right pixels, zero CPU copies on the zero-copy path, a clean teardown (leak and isolation checks), bad options
/// and cancellation. Never asserts speed.</summary>
public sealed class DemoPipelineTests : IDisposable
{
    private const int Width = 128;
    private const int Height = 96;
    private static readonly TimeSpan Generous = TimeSpan.FromMinutes(2);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("xenshare-demo-test-");

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

    private DemoOptions Options(bool copy = false, int frames = 6, int buffers = 2, bool beAlloc = false,
        DemoBackendDomain backend = DemoBackendDomain.Driver, bool fragmented = false, int width = Width, int height = Height, bool compare = false) => new()
    {
        Compare = compare,
        Width = width,
        Height = height,
        Frames = frames,
        Buffers = buffers,
        Copy = copy,
        BackendAllocated = beAlloc,
        BackendDomain = backend,
        Fragmented = fragmented,
        OutputDirectory = Path.Combine(_dir.FullName, (copy ? "copy" : beAlloc ? "be-alloc" : "zero") + "-" + backend + (fragmented ? "-fragmented" : "") + (compare ? "-compare" : "")),
    };

    private static DemoResult Run(DemoOptions options, Action<int>? frameDone = null, CancellationToken cancellationToken = default)
    {
        var task = Task.Run(() => DemoScene.Run(options, frameDone, cancellationToken: cancellationToken), CancellationToken.None);
        Assert.True(task.Wait(Generous, CancellationToken.None), "the demo did not finish");
        return task.Result;
    }

    private static void AssertFramePixels(DemoOptions o, int frame)
    {
        string path = o.FramePath(frame);
        Assert.True(File.Exists(path), path);
        var image = PngDecoder.DecodeFile(path);
        Assert.Equal(o.Width, image.Width);
        Assert.Equal(o.Height, image.Height);
        int buffer = frame % o.Buffers;
        for (int y = 0; y < o.Height; y += 7)
        {
            for (int x = 0; x < o.Width; x += 5)
            {
                uint expected = TestPattern.ExpectedPixel(x, y, o.Width, o.Height, frame, buffer);
                Assert.True(expected == image.GetRgb(x, y), $"frame {frame} pixel ({x},{y}): expected {expected:X6}, got {image.GetRgb(x, y):X6}");
            }
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ZeroCopyRunWritesCorrectFramesWithoutCpuCopiesAndTearsDownClean(bool beAlloc)
    {
        var o = Options(beAlloc: beAlloc);
        var completed = new List<int>();
        var result = Run(o, n => { lock (completed) completed.Add(n); });

        Assert.False(result.Cancelled);
        Assert.Equal(o.Frames, result.FramesCompleted);
        Assert.Equal(o.Frames, completed.Count);
        Assert.Equal(o.Frames, result.PngFiles.Count);
        foreach (int frame in new[] { 0, 1, 3, o.Frames - 1 }) AssertFramePixels(o, frame);

        Assert.Equal(0, result.CpuBytesCopied);
        Assert.Equal(o.Frames, result.ZeroCopyFrames);
        Assert.Equal(0, result.GrantOpsPerFrame);
        Assert.Equal(2 + (o.Buffers * o.PagesPerBuffer), result.SetupGrantOps);
        Assert.Equal(o.Buffers, result.ScanoutSegments.Count);
        Assert.All(result.ScanoutSegments, s => Assert.Equal(1, s));

        // The frames went over displif: two buffers created and attached, frame 0 shown by the mode set, the
        // rest by page flips, then the connector off and everything detached and destroyed.
        Assert.Equal("/local/domain/1/device/vdispl/0", result.DevicePath);
        // dom0 walked the xenbus states: InitWait, Connected with the frontend, InitWait again after its close,
        // Closed when the backend stopped.
        Assert.Contains("InitWait, Connected, InitWait", result.BackendStates, StringComparison.Ordinal);
        Assert.EndsWith("Closed", result.BackendStates, StringComparison.Ordinal);
        Assert.Equal($"DBUF_CREATE {o.Buffers}, FB_ATTACH {o.Buffers}, SET_CONFIG 2, PG_FLIP {o.Frames - 1}, FB_DETACH {o.Buffers}, DBUF_DESTROY {o.Buffers}", result.Requests);

        Assert.True(result.Released);
        Assert.Empty(result.Leaks);
        Assert.NotNull(result.ContactSheet);
        Assert.True(File.Exists(result.ContactSheet));
        Assert.True(PngDecoder.DecodeFile(result.ContactSheet).Width > 0);
    }

    /// <summary>DM04 on the demo: frontend-allocated buffers shown by dom0's display with fragmented placement. At
    /// 640x480 (1.2 MB) they cannot be bounced: the display's map fails with ENOMEM, nothing is shown, the run
    /// says why and tears down clean; small ones (64 KiB) are bounced: every byte counted, the pictures right
    /// (the display syncs each present), and not called zero copy.</summary>
    [Fact]
    public void Dom0DisplayWithFragmentedMemory_ReportsMappingErrorsOrBounceCopies_NeverZeroCopy()
    {
        var large = Options(backend: DemoBackendDomain.Dom0, fragmented: true, width: 640, height: 480, frames: 3);
        var failed = Run(large);
        Assert.Equal(0, failed.FramesCompleted);
        Assert.Equal(large.Buffers, failed.MappingErrors);
        Assert.False(failed.ZeroCopy);
        Assert.True(failed.BackendDirectMapped);
        Assert.Contains("--backend-domain driver", failed.Advice, StringComparison.Ordinal);
        Assert.Equal(0, failed.BounceBytes);
        Assert.Empty(failed.PngFiles);
        Assert.True(failed.Released);
        Assert.Empty(failed.Leaks);

        var small = Options(backend: DemoBackendDomain.Dom0, fragmented: true, width: 128, height: 128, frames: 4);
        var bounced = Run(small);
        Assert.Equal(small.Frames, bounced.FramesCompleted);
        foreach (int frame in new[] { 0, 1, 2, 3 }) AssertFramePixels(small, frame);
        // The map copies each buffer once, the sync before each present copies the shown one again.
        Assert.Equal((small.Buffers + small.Frames) * small.FrameBytes, bounced.BounceBytes);
        Assert.Equal(bounced.BounceBytes, bounced.CpuBytesCopied);
        Assert.Equal(0, bounced.ZeroCopyFrames);
        Assert.False(bounced.ZeroCopy);
        Assert.Contains("bounce", bounced.Advice, StringComparison.Ordinal);
        Assert.Empty(bounced.Leaks);
    }

    /// <summary>Zero copy is reported where the hardware gets it: a driver domain's display (default), and
    /// backend-allocated buffers in dom0, both with fragmented placement; the JSON says the same.</summary>
    [Theory]
    [InlineData("driver", false)]
    [InlineData("dom0", true)]
    public void ZeroCopyWhereTheHardwareGetsIt_DriverDomainOrBackendAllocated(string backendName, bool beAlloc)
    {
        var backend = backendName == "dom0" ? DemoBackendDomain.Dom0 : DemoBackendDomain.Driver;
        var o = Options(backend: backend, beAlloc: beAlloc, fragmented: true, width: 640, height: 480, frames: 3);
        var result = Run(o);
        Assert.Equal(o.Frames, result.FramesCompleted);
        foreach (int frame in new[] { 0, 2 }) AssertFramePixels(o, frame);
        Assert.True(result.ZeroCopy);
        Assert.Equal(0, result.BounceBytes);
        Assert.Equal(0, result.MappingErrors);
        Assert.Equal(o.Frames, result.ZeroCopyFrames);
        Assert.Equal(backend == DemoBackendDomain.Dom0, result.BackendDirectMapped);
        Assert.Null(result.Advice);
        Assert.Empty(result.Leaks);
        using var json = System.Text.Json.JsonDocument.Parse(DemoCommand.Json(result));
        var root = json.RootElement;
        Assert.Equal(o.Frames, root.GetProperty("frames_shown").GetInt32());
        Assert.Equal(0, root.GetProperty("cpu_bytes_copied").GetInt64());
        Assert.Equal(0, root.GetProperty("bounce_bytes").GetInt64());
        Assert.Equal(0, root.GetProperty("mapping_errors").GetInt32());
        Assert.True(root.GetProperty("zero_copy").GetBoolean());
        Assert.Equal(backend == DemoBackendDomain.Dom0 ? "dom0" : "driver", root.GetProperty("backend_domain").GetString());
        Assert.Equal("fragmented", root.GetProperty("placement").GetString());
    }

    [Fact]
    public void CopyModeCopiesEveryFrameWithGrantCopyAndShowsTheSamePictures()
    {
        var o = Options(copy: true, frames: 4, buffers: 3);
        var result = Run(o);

        Assert.Equal(o.Frames, result.FramesCompleted);
        foreach (int frame in new[] { 0, 2, 3 }) AssertFramePixels(o, frame);
        Assert.True(result.CpuBytesCopied > 0);
        Assert.Equal(o.Frames * o.FrameBytes, result.CpuBytesCopied);
        Assert.Equal(o.PagesPerBuffer, result.GrantOpsPerFrame);
        Assert.Empty(result.ScanoutSegments);
        Assert.Contains($"PG_FLIP {o.Frames - 1}", result.Requests, StringComparison.Ordinal);
        Assert.True(result.Released);
        Assert.Empty(result.Leaks);
    }

    [Fact]
    public void PngEveryWritesEveryNthAndTheLastFrame()
    {
        var o = Options(frames: 7) with { PngEvery = 3 };
        var result = Run(o);
        Assert.Equal([o.FramePath(0), o.FramePath(3), o.FramePath(6)], result.PngFiles);
        Assert.False(File.Exists(o.FramePath(1)));
        Assert.Empty(result.Leaks);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CancellationMidRunTearsDownCleanly(bool beAlloc)
    {
        var o = Options(frames: 100_000, beAlloc: beAlloc);
        using var cts = new CancellationTokenSource();
        var result = Run(o, n => { if (n == 3) cts.Cancel(); }, cts.Token);

        Assert.True(result.Cancelled);
        Assert.InRange(result.FramesCompleted, 3, o.Frames - 1);
        Assert.True(result.Released);
        Assert.Empty(result.Leaks);
        Assert.Null(result.ContactSheet);
    }

    private static (int ExitCode, string Output, string Error) Invoke(params string[] args) => XenShare.Tests.Cli.CliRun.Invoke(args);

    [Theory]
    [InlineData("--width", "10", "--width")]
    [InlineData("--width", "129", "--width")]
    [InlineData("--height", "5000", "--height")]
    [InlineData("--frames", "0", "--frames")]
    [InlineData("--buffers", "0", "--buffers")]
    [InlineData("--buffers", "9", "--buffers")]
    [InlineData("--png-every", "0", "--png-every")]
    public void BadOptionsGiveAMessageAndANonZeroExit(string option, string value, string mentioned)
    {
        var (exitCode, _, error) = Invoke("demo", "--width", "128", "--height", "96", "--frames", "2", "--out", Path.Combine(_dir.FullName, "bad"), option, value);
        Assert.NotEqual(0, exitCode);
        Assert.Contains(mentioned, error, StringComparison.Ordinal);
    }

    /// <summary>A value that is not a number is named by its option, not by a .NET type (issue 13).</summary>
    [Theory]
    [InlineData("--width", "abc")]
    [InlineData("--frames", "1.5")]
    [InlineData("--png-every", "x")]
    public void NonNumbersAreReportedByOption(string option, string value)
    {
        var (exitCode, _, error) = Invoke("demo", "--out", Path.Combine(_dir.FullName, "bad"), option, value);
        Assert.NotEqual(0, exitCode);
        Assert.Contains($"{option} takes a whole number, not '{value}'", error, StringComparison.Ordinal);
        Assert.DoesNotContain("System.Int32", error, StringComparison.Ordinal);
    }

    [Fact]
    public void CopyAndBeAllocTogetherGiveAMessageAndANonZeroExit()
    {
        var (exitCode, _, error) = Invoke("demo", "--width", "128", "--height", "96", "--frames", "2", "--out", Path.Combine(_dir.FullName, "bad"), "--copy", "--be-alloc");
        Assert.Equal(DemoCommand.ErrorExitCode, exitCode);
        Assert.Contains("--be-alloc", error, StringComparison.Ordinal);
    }

    [Fact]
    public void UnwritableOutputFolderGivesAMessageAndANonZeroExit()
    {
        string file = Path.Combine(_dir.FullName, "a-file");
        File.WriteAllText(file, "not a folder");
        var (exitCode, _, error) = Invoke("demo", "--width", "128", "--height", "96", "--frames", "2", "--out", Path.Combine(file, "sub"));
        Assert.NotEqual(0, exitCode);
        Assert.Contains("--out", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void CommandRunsAndPrintsTheSummaryTable(bool beAlloc)
    {
        string folder = Path.Combine(_dir.FullName, beAlloc ? "cmd-be" : "cmd");
        string[] args = ["demo", "--width", "128", "--height", "96", "--frames", "3", "--out", folder];
        var (exitCode, output, error) = Invoke(beAlloc ? [.. args, "--be-alloc", "--no-compare"] : args);
        Assert.True(exitCode == 0, error);
        string text = System.Text.RegularExpressions.Regex.Replace(output, @"\s+", " ");
        if (beAlloc)
        {
            Assert.Contains("run without --no-compare", text, StringComparison.Ordinal);
        }
        else
        {
            // The timing passes: the same frames on both paths, timed in this run, the PNGs the same byte for byte.
            Assert.Contains("display path timed on both paths", text, StringComparison.Ordinal);
            Assert.Contains("GRANT_COPY takes", text, StringComparison.Ordinal);
            Assert.Contains("byte for byte (3 of 3 compared)", text, StringComparison.Ordinal);
        }
        Assert.Contains(beAlloc ? "be-alloc 1" : "be-alloc 0", output, StringComparison.Ordinal);
        Assert.Contains("PG_FLIP 2", output, StringComparison.Ordinal);
        Assert.Contains("flips/s", output, StringComparison.Ordinal);
        Assert.Contains("CPU bytes copied", output, StringComparison.Ordinal);
        Assert.Contains("leak check clean", output, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(folder, "frame_0002.png")));
        Assert.True(File.Exists(Path.Combine(folder, "contact_sheet.png")));
    }

    [Fact]
    public async Task CancelledCommandExitsWith130AfterACleanTeardown()
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();
        var options = Options(frames: 1000);
        int exitCode = await DemoCommand.RunAsync(options, output, error, cts.Token).WaitAsync(Generous);
        Assert.Equal(DemoCommand.CancelledExitCode, exitCode);
        Assert.Contains("clean", output.ToString(), StringComparison.Ordinal);
        Assert.Equal("", error.ToString());
    }
}
