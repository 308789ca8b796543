using System.CommandLine;
using Spectre.Console;
using XenShare.Cli;
using XenShare.Cli.Bench;
using XenShare.Cli.Commands;
using XenShare.Cli.Demo;
using XenShare.Native;

namespace XenShare.Tests.Cli;

/// <summary>Every table the CLI prints fits a 100-column terminal (issue 13 item 5): rendered 100 columns wide, as a
/// redirected run prints them, no line is longer than 100 characters - with the longest texts the commands produce
/// (4K frames, long paths, the bench's long descriptions, every ABI name).</summary>
public sealed class TableWidthTests
{
    private const int Columns = 100;

    private static void AssertFits(string rendered, string what)
    {
        var lines = rendered.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
        Assert.True(lines.Count > 3, what + ": nothing rendered");
        foreach (string line in lines)
            Assert.True(line.Length <= Columns, $"{what}: a line of {line.Length} characters:\n{line}");
    }

    private static (int ExitCode, string Output, string Error) Run(params string[] args) => XenShare.Tests.Cli.CliRun.Invoke(args);

    [Fact]
    public void A_redirected_console_is_100_columns_wide()
    {
        using var writer = new StringWriter();
        var console = CliConsole.Create(writer, out bool interactive);
        Assert.False(interactive);
        Assert.Equal(Columns, console.Profile.Width);
        Assert.Equal(80, CliConsole.Create(writer, 80).Profile.Width);
    }

    [Fact]
    public void Abi_tables_fit_100_columns()
    {
        foreach (var table in AbiCommand.Tables()) AssertFits(CliConsole.Render(table), "abi");
        var (exitCode, output, _) = Run("abi");
        Assert.Equal(0, exitCode);
        AssertFits(output, "xenshare abi");
        // The longest names stay whole (no name is split across lines).
        Assert.Contains("IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED", output, StringComparison.Ordinal);
        Assert.Contains("ioctl_gntdev_dmabuf_exp_wait_released", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Bench_table_fits_100_columns()
    {
        const string longWhat = "displif PG_FLIP end to end at 1920x1080 on the emulated host (DisplifFrontend request -> ring + evtchn -> DisplifBackend ring thread -> scan-out latch -> response + XENDISPL_EVT_PG_FLIP -> frontend thread -> flip task completes), pacing off, no PNG; vs one memcpy of a 1920x1080x4 frame";
        BenchRow[] rows =
        [
            BenchRow.Create("P11", longWhat, 85.5, "µs/flip", 1831.2, "µs memcpy 1080p frame", BenchGoal.AtMostRatio(0.01)),
            BenchRow.Create("P7b", "managed bytes per export cycle: EXP_FROM_REFS (1 ref, typed API) + close + EXP_WAIT_RELEASED, median of 21 x 250, vs a 256 B budget", 568, "B/cycle", 256, "B/cycle budget", BenchGoal.AtMostRatio(1)),
            BenchRow.Create("P6", "export + close + EXP_WAIT_RELEASED cycles/s with 100,000 live exports in the file vs with 10", 391234.5, "cycles/s", 491234.5, "cycles/s with 10 live", BenchGoal.AtLeastRatio(0.8)),
        ];
        AssertFits(CliConsole.Render(BenchCommand.Table(rows)), "bench");
    }

    [Fact]
    public void Info_text_fits_100_columns()
    {
        var limits = InfoCommand.EmulatedLimits.Read();
        string emulated = InfoCommand.ToText(null, limits);
        AssertFits(emulated, "info (emulated)");
        Assert.Contains("modprobe xen-gntdev xen-gntalloc xen-evtchn", emulated, StringComparison.Ordinal);   // how to get the native backend
        Assert.Contains("CONFIG_XEN_GNTDEV_DMABUF", emulated, StringComparison.Ordinal);
        var probe = new NativeXenProbe
        {
            GntDevExists = true,
            GntDevOpenResult = 0,
            GntAllocExists = true,
            GntAllocOpenResult = -13,
            EvtChnExists = false,
            EvtChnOpenResult = -2,
            DmaBufProbeResult = -25,
        };
        AssertFits(InfoCommand.ToText(probe, limits), "info (native)");
        var (exitCode, output, _) = Run("info");
        Assert.Equal(0, exitCode);
        AssertFits(output, "xenshare info");
    }

    [Fact]
    public void Demo_tables_and_notes_fit_100_columns()
    {
        foreach (var result in new[] { SampleDemo.ZeroCopyWithComparison(), SampleDemo.Dom0MappingErrors(), SampleDemo.ZeroCopyWithComparison() with { TimedRun = null, Comparison = null } })
        {
            foreach (var table in DemoCommand.Tables(result)) AssertFits(CliConsole.Render(table), "demo");
            foreach (string note in DemoCommand.Notes(result)) AssertFits(CliConsole.Render(new Text(note + "\n")) + "\n\n\n", "demo note");
        }
    }
}
