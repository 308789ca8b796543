using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using XenShare.Cli.Demo;
using XenShare.Tests.Demo;

namespace XenShare.Tests.Cli;

/// <summary>The built <c>xenshare</c> in a child process (<c>dotnet XenShare.Cli.dll demo ...</c>), stopped by a real
/// signal: SIGTERM exits 143, SIGINT (Ctrl+C) 130, after a clean teardown, and the files it leaves are exactly the ones
/// its summary counts, each a whole PNG (written under a temporary name, then renamed).</summary>
public sealed partial class SignalTests : IDisposable
{
    private const int SIGINT = 2;
    private const int SIGTERM = 15;
    private static readonly TimeSpan Generous = TimeSpan.FromMinutes(2);
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("xenshare-signal-");

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

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);

    /// <summary>The dotnet host that runs this test (the CLI runs on the same one).</summary>
    private static string DotnetHost()
    {
        if (Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)) return host;
        string? self = Environment.ProcessPath;
        return self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet" ? self : "dotnet";
    }

    [Theory]
    [InlineData(SIGTERM, 143)]
    [InlineData(SIGINT, 130)]
    public async Task ASignalStopsTheDemoCleanly_WithExitCode128PlusItsNumber_AndLeavesExactlyTheFilesItCounts(int signal, int expectedExitCode)
    {
        string cli = Path.Combine(AppContext.BaseDirectory, "XenShare.Cli.dll");
        Assert.True(File.Exists(cli), cli);
        string folder = Path.Combine(_dir.FullName, "out");
        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[] { cli, "demo", "--width", "64", "--height", "64", "--frames", "100000", "--no-compare", "--out", folder }) start.ArgumentList.Add(arg);

        var output = new StringBuilder();
        var error = new StringBuilder();
        var progress = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var process = new Process { StartInfo = start };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (output) output.AppendLine(e.Data);
            if (e.Data.StartsWith("progress:", StringComparison.Ordinal)) progress.TrySetResult();
        };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null) return;
            lock (error) error.AppendLine(e.Data);
        };
        Assert.True(process.Start());
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            // Frames are being shown: the first progress line (or the process ended early, which fails below).
            await Task.WhenAny(progress.Task, process.WaitForExitAsync()).WaitAsync(Generous);
            Assert.True(progress.Task.IsCompleted, "no progress line; output: " + output + error);
            Assert.Equal(0, Kill(process.Id, signal));
            using var patience = new CancellationTokenSource(Generous);
            await process.WaitForExitAsync(patience.Token);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }

        string stdout, stderr;
        lock (output) stdout = output.ToString();
        lock (error) stderr = error.ToString();
        Assert.True(expectedExitCode == process.ExitCode, $"exit code {process.ExitCode}; output: {stdout}{stderr}");
        Assert.Equal("", stderr);   // no leak findings, no failure

        var summary = SummaryLine().Match(stdout);
        Assert.True(summary.Success, stdout);
        int completed = int.Parse(summary.Groups["completed"].Value, CultureInfo.InvariantCulture);
        int presented = int.Parse(summary.Groups["presented"].Value, CultureInfo.InvariantCulture);
        int files = int.Parse(summary.Groups["files"].Value, CultureInfo.InvariantCulture);
        Assert.InRange(presented, completed, completed + 1);
        Assert.Equal(presented, files);
        Assert.Contains("torn down: clean", stdout, StringComparison.Ordinal);

        // On disk: exactly those files, each a whole PNG, each listed in the marker; nothing under a temporary name,
        // no contact sheet.
        var expected = Enumerable.Range(0, files).Select(DemoOptions.FrameFileName).ToList();
        Assert.Equal(
            [DemoOutputFolder.MarkerName, .. expected],
            Directory.EnumerateFileSystemEntries(folder).Select(e => Path.GetFileName(e)!).Order(StringComparer.Ordinal));
        foreach (string name in expected)
        {
            var image = PngDecoder.DecodeFile(Path.Combine(folder, name));
            Assert.Equal((64, 64), (image.Width, image.Height));
        }
        Assert.Equal([DemoOutputFolder.MarkerHeader, .. expected], File.ReadAllLines(Path.Combine(folder, DemoOutputFolder.MarkerName)));
    }

    [GeneratedRegex(@"cancelled after (?<completed>[0-9]+) of 100000 frames: the display showed (?<presented>[0-9]+), the frontend saw [0-9]+ complete; (?<files>[0-9]+) PNG file")]
    private static partial Regex SummaryLine();
}
