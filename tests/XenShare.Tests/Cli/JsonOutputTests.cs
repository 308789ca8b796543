using System.Text.Json;
using XenShare.Cli.Bench;
using XenShare.Cli.Commands;
using XenShare.Cli.Json;

namespace XenShare.Tests.Cli;

/// <summary>All JSON the CLI writes goes through System.Text.Json source generation (issue 13 item 4): the contexts
/// carry generated metadata for every shape, and the shapes keep their field names and order.</summary>
public sealed class JsonOutputTests
{
    [Fact]
    public void Every_json_shape_has_generated_metadata()
    {
        Assert.NotNull(CliJsonContext.Default.GetTypeInfo(typeof(IReadOnlyList<BenchRow>)));
        Assert.NotNull(CliJsonContext.Default.GetTypeInfo(typeof(AbiJson)));
        Assert.NotNull(CliJsonContext.Default.GetTypeInfo(typeof(InfoJson)));
        Assert.NotNull(DemoJsonContext.Default.GetTypeInfo(typeof(DemoJson)));
        Assert.Same(CliJsonContext.Relaxed, CliJsonContext.Relaxed.Options.TypeInfoResolver);
        Assert.Same(DemoJsonContext.Relaxed, DemoJsonContext.Relaxed.Options.TypeInfoResolver);
    }

    [Fact]
    public void Demo_json_keeps_its_fields_in_order_and_adds_the_comparison()
    {
        var result = SampleDemo.ZeroCopyWithComparison();
        using var json = JsonDocument.Parse(DemoCommand.Json(result));
        Assert.Equal(
            [
                "mode", "backend_domain", "backend_domid", "backend_direct_mapped", "be_alloc", "placement", "width", "height", "buffers",
                "frames_requested", "frames_shown", "frames_presented", "cpu_bytes_copied", "bounce_bytes", "mapping_errors", "zero_copy",
                "zero_copy_frames", "scanout_segments", "grant_ops_per_frame", "microseconds_per_flip", "scanout_us_per_flip", "copy_us_per_flip",
                "copy_to_scanout_ratio", "png_files", "pngs_compared", "pngs_identical", "contact_sheet", "timed", "comparison", "cancelled", "clean", "leaks",
                "advice",
            ],
            json.RootElement.EnumerateObject().Select(p => p.Name));
        var root = json.RootElement;
        Assert.Equal(9876.5, root.GetProperty("scanout_us_per_flip").GetDouble());
        Assert.Equal(123456.7, root.GetProperty("copy_us_per_flip").GetDouble());
        Assert.Equal(Math.Round(123456.7 / 9876.5, 3), root.GetProperty("copy_to_scanout_ratio").GetDouble());
        Assert.Equal("scanout", root.GetProperty("timed").GetProperty("mode").GetString());
        Assert.Equal("copy", root.GetProperty("comparison").GetProperty("mode").GetString());
        Assert.Equal(JsonValueKind.Null, root.GetProperty("advice").ValueKind);
        Assert.DoesNotContain('\n', DemoCommand.Json(result));
    }

    [Fact]
    public void Bench_json_leaves_units_and_targets_readable()
    {
        string json = BenchCommand.ToJson([BenchRow.Create("P3", "w", 1.5, "µs/flip", 6000, "µs memcpy", BenchGoal.AtMostRatio(0.01))]);
        Assert.Contains("\"unit\": \"µs/flip\"", json, StringComparison.Ordinal);
        Assert.Contains("\"target\": \"<= 0.01\"", json, StringComparison.Ordinal);
    }
}
