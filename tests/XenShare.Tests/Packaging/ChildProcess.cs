using System.Diagnostics;
using System.Globalization;

namespace XenShare.Tests.Packaging;

/// <summary>What a child process wrote and how it ended.</summary>
public sealed record ChildResult(string Command, int ExitCode, string StdOut, string StdErr, TimeSpan Elapsed)
{
    /// <summary>The command, its exit code and the end of its output, for an assertion message.</summary>
    public string Describe(int tailChars = 6000)
    {
        string output = StdOut + (StdErr.Length > 0 ? "\n[stderr]\n" + StdErr : "");
        if (output.Length > tailChars) output = "..." + output[^tailChars..];
        return string.Create(CultureInfo.InvariantCulture, $"{Command}\nexit code {ExitCode} after {Elapsed.TotalSeconds:F1} s\n{output}");
    }
}

/// <summary>
/// Runs a child process (dotnet, git, the installed tool) with a timeout: on timeout the whole process tree
/// is killed and the test fails. dotnet children get no telemetry, no logo, no MSBuild node reuse and no
/// shared compiler server, so that no build server outlives the test (and holds its output pipes open),
/// and none of the MSBuild variables of the <c>dotnet test</c> that runs the tests.
/// </summary>
internal static class ChildProcess
{
    /// <summary>How long the output pipes may stay open after the process exited or was killed.</summary>
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);

    /// <summary>The dotnet host that runs these tests' builds: DOTNET_HOST_PATH (set by the dotnet CLI for
    /// the processes it starts), else dotnet on PATH.</summary>
    public static string DotnetPath { get; } = FindDotnet();

    /// <summary>The folder of the dotnet host with the runtimes (DOTNET_ROOT for an installed tool's apphost).</summary>
    public static string DotnetRoot { get; } = FindDotnetRoot(DotnetPath);

    public static Task<ChildResult> DotnetAsync(string workingDirectory, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment, params string[] arguments) =>
        RunAsync(DotnetPath, arguments, workingDirectory, timeout, environment);

    public static async Task<ChildResult> RunAsync(string fileName, IReadOnlyList<string> arguments, string workingDirectory, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(fileName)
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        foreach (string name in start.Environment.Keys.ToList())
        {
            if (name.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase)) start.Environment.Remove(name);
        }

        start.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        start.Environment["DOTNET_CLI_USE_MSBUILD_SERVER"] = "0";
        start.Environment["UseSharedCompilation"] = "false";
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        start.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        if (environment is not null)
        {
            foreach (var (name, value) in environment) start.Environment[name] = value;
        }

        string command = fileName + " " + string.Join(' ', arguments);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new InvalidOperationException("Process.Start returned null for " + command);
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        bool timedOut = false;
        using (var deadline = new CancellationTokenSource(timeout))
        {
            try
            {
                await process.WaitForExitAsync(deadline.Token);
            }
            catch (OperationCanceledException)
            {
                timedOut = true;
                process.Kill(entireProcessTree: true);
                using var killed = new CancellationTokenSource(DrainTimeout);
                await process.WaitForExitAsync(killed.Token);
            }
        }

        string output, error;
        try
        {
            output = await stdout.WaitAsync(DrainTimeout);
            error = await stderr.WaitAsync(DrainTimeout);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"{command}: exited, but a process it started still holds its output open after {DrainTimeout}.");
        }

        var result = new ChildResult(command, process.ExitCode, output, error, clock.Elapsed);
        if (timedOut) throw new TimeoutException($"did not finish within {timeout} (process tree killed):\n{result.Describe()}");
        return result;
    }

    private static string FindDotnet()
    {
        string? host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host)) return host;
        foreach (string dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(dir, "dotnet");
            if (File.Exists(candidate)) return candidate;
        }

        return "dotnet";
    }

    private static string FindDotnetRoot(string dotnet)
    {
        string? root = Environment.GetEnvironmentVariable("DOTNET_ROOT");
        if (!string.IsNullOrEmpty(root) && Directory.Exists(root)) return root;
        if (!File.Exists(dotnet)) return "";
        var file = new FileInfo(dotnet);
        string real = file.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? file.FullName;
        return Path.GetDirectoryName(real) ?? "";
    }
}
