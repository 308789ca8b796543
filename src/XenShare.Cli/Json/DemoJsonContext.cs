using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace XenShare.Cli.Json;

/// <summary>
/// The JSON of <c>xenshare demo --json</c>, written through System.Text.Json source generation (no reflection):
/// snake_case names (<c>frames_shown</c>, <c>cpu_bytes_copied</c>, ...), one line. <see cref="Relaxed"/> is the
/// instance the command uses (text left unescaped where JSON allows it).
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(DemoJson))]
internal sealed partial class DemoJsonContext : JsonSerializerContext
{
    /// <summary>The context with the same settings and a relaxed encoder (the command's output).</summary>
    public static DemoJsonContext Relaxed { get; } = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });
}
