using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using XenShare.Cli.Bench;
using XenShare.Cli.Json;

namespace XenShare.Cli.Commands;

/// <summary><c>xenshare bench [--json] [--only P1,P4] [--quick] [--fail-on-miss]</c>: measures the performance
/// targets of docs/perf as same-run ratios on the emulated host and reports them. A report: it exits 0 even when
/// a target fails, unless <c>--fail-on-miss</c> asks for <see cref="MissExitCode"/>.</summary>
internal static class BenchCommand
{
    /// <summary>Exit code of <c>--fail-on-miss</c> when a target was missed.</summary>
    public const int MissExitCode = 3;

    /// <summary>What every run says last: where each target is explained.</summary>
    internal const string DocsLine = "what each target measures, its baseline, and why the emulator's figures are not real Xen's: docs/performance.md";

    /// <summary>What every run says first: what is measured.</summary>
    internal const string Scope = "bench measures XenShare's emulated Xen host in this process (not a real Xen system): each target is a ratio against a baseline taken in the same run";

    /// <summary>Creates the <c>bench</c> command.</summary>
    public static Command Create()
    {
        var json = new Option<bool>("--json")
        {
            Description = "Print JSON: [{\"id\", \"what\", \"value\", \"unit\", \"baseline\", \"baselineUnit\", \"ratio\", \"target\", \"pass\"}, ...].",
        };
        var only = new Option<string?>("--only")
        {
            Description = "Comma-separated target ids to run (default: all implemented), e.g. P1,P4.",
        };
        var quick = new Option<bool>("--quick")
        {
            Description = "Few repetitions and small sizes: checks the machinery, the numbers are rough.",
        };
        var failOnMiss = new Option<bool>("--fail-on-miss")
        {
            Description = "Exit with code 3 when a target is missed (default: report only, exit 0).",
        };
        var command = new Command("bench", "Measure the performance targets (" + string.Join(", ", BenchTargets.All.Select(t => t.Id)) + ") on the emulated Xen host in this process, each against a baseline measured in the same run. Run it from a Release build (dotnet run -c Release --project src/XenShare.Cli -- bench). Every target is explained in docs/performance.md.");
        command.Options.Add(json);
        command.Options.Add(only);
        command.Options.Add(quick);
        command.Options.Add(failOnMiss);
        command.SetAction(parseResult =>
        {
            TextWriter output = parseResult.InvocationConfiguration.Output;
            TextWriter error = parseResult.InvocationConfiguration.Error;
            var targets = BenchTargets.Select(parseResult.GetValue(only), out var unknown);
            if (unknown.Count > 0)
            {
                error.WriteLine($"unknown or not implemented target(s): {string.Join(", ", unknown)} (implemented: {string.Join(", ", BenchTargets.All.Select(t => t.Id))})");
                return 1;
            }

            var options = parseResult.GetValue(quick) ? BenchOptions.Quick : BenchOptions.Default;
            bool asJson = parseResult.GetValue(json);
            TextWriter notes = asJson ? error : output;
            notes.WriteLine(Scope + ".");
            if (IsDebugBuild) notes.WriteLine("warning: this is a Debug build of xenshare; its timings say little (run with -c Release)");
            var rows = BenchTargets.Run(targets, options, asJson ? null : t => output.WriteLine($"measuring {t.Id}: {t.Title} ..."));
            if (asJson)
            {
                output.WriteLine(ToJson(rows));
                error.WriteLine(Summary(rows));
            }
            else
            {
                WriteTable(output, rows);
                output.WriteLine(Summary(rows));
            }
            notes.WriteLine(DocsLine);

            return parseResult.GetValue(failOnMiss) && rows.Any(r => !r.Pass) ? MissExitCode : 0;
        });
        return command;
    }

    /// <summary>Whether this assembly was compiled without optimisations (a Debug build).</summary>
    internal static bool IsDebugBuild =>
        typeof(BenchCommand).Assembly.GetCustomAttributes(typeof(System.Diagnostics.DebuggableAttribute), false)
            .OfType<System.Diagnostics.DebuggableAttribute>().Any(a => a.IsJITOptimizerDisabled);

    /// <summary>"4 target(s): 3 pass, 1 fail (P1)".</summary>
    internal static string Summary(IReadOnlyList<BenchRow> rows)
    {
        var failed = rows.Where(r => !r.Pass).Select(r => r.Id).ToList();
        string text = string.Create(CultureInfo.InvariantCulture, $"{rows.Count} target(s): {rows.Count - failed.Count} pass, {failed.Count} fail");
        return failed.Count == 0 ? text : text + " (" + string.Join(", ", failed) + ")";
    }

    /// <summary>The rows as an indented JSON array (System.Text.Json source generation, <see cref="CliJsonContext"/>).</summary>
    internal static string ToJson(IEnumerable<BenchRow> rows) =>
        JsonSerializer.Serialize<IReadOnlyList<BenchRow>>([.. rows], CliJsonContext.Relaxed.IReadOnlyListBenchRow);

    private static void WriteTable(TextWriter output, IReadOnlyList<BenchRow> rows) => CliConsole.Create(output).Write(Table(rows));

    /// <summary>The rows as a table that reads well in 100 columns: the value and its baseline share a column (one
    /// under the other), so the long "what" texts get the room.</summary>
    internal static Table Table(IReadOnlyList<BenchRow> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var table = new Table().Title("performance targets (same-run ratios)");
        table.AddColumn(new TableColumn("id").NoWrap());
        table.AddColumn("what");
        table.AddColumn(new TableColumn("value vs baseline").RightAligned());
        table.AddColumn(new TableColumn("ratio").RightAligned().NoWrap());
        table.AddColumn(new TableColumn("target").NoWrap());
        table.AddColumn(new TableColumn("pass").NoWrap());
        foreach (var row in rows)
        {
            table.AddRow(
                new Text(row.Id),
                new Text(row.What),
                new Text(Number(row.Value) + " " + row.Unit + "\nvs " + Number(row.Baseline) + " " + row.BaselineUnit),
                new Text(Ratio(row.Ratio)),
                new Text(row.Target),
                new Text(row.Pass ? "pass" : "FAIL"));
        }

        return table;
    }

    /// <summary>A ratio with the digits that matter: 0.25, 2.898, 0.00035 (never a bare 0 for a small ratio).</summary>
    internal static string Ratio(double ratio) =>
        ratio == 0 || Math.Abs(ratio) >= 0.01
            ? ratio.ToString("0.###", CultureInfo.InvariantCulture)
            : ratio.ToString("G2", CultureInfo.InvariantCulture);

    private static string Number(double value) =>
        value.ToString(Math.Abs(value) >= 100 ? "0" : Math.Abs(value) >= 10 ? "0.0" : "0.##", CultureInfo.InvariantCulture);
}
