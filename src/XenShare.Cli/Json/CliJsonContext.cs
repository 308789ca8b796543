using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;
using XenShare.Cli.Bench;

namespace XenShare.Cli.Json;

/// <summary>
/// The JSON of <c>xenshare bench --json</c>, <c>abi --json</c> and <c>info --json</c>, written through System.Text.Json
/// source generation (no reflection): camelCase names, indented. <see cref="Relaxed"/> is the instance the commands use:
/// it leaves non-ASCII text such as "µs" and comparison signs such as "&lt;=" unescaped, as people read them.
/// </summary>
[JsonSourceGenerationOptions(WriteIndented = true, PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(IReadOnlyList<BenchRow>))]
[JsonSerializable(typeof(AbiJson))]
[JsonSerializable(typeof(InfoJson))]
internal sealed partial class CliJsonContext : JsonSerializerContext
{
    /// <summary>The context with the same settings and a relaxed encoder (the commands' output).</summary>
    public static CliJsonContext Relaxed { get; } = new(new JsonSerializerOptions
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
