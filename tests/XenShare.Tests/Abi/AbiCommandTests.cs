using System.CommandLine;
using System.Text.Json;
using XenShare.Abi;

namespace XenShare.Tests.Abi;

/// <summary>Runs <c>xenshare abi</c> in-process through the real command-line parser.</summary>
public sealed class AbiCommandTests
{
    private static (int ExitCode, string Output, string Error) Run(params string[] args) => XenShare.Tests.Cli.CliRun.Invoke(args);

    [Fact]
    public void Abi_json_parses_and_matches_the_catalog()
    {
        (int exitCode, string output, string error) = Run("abi", "--json");
        Assert.True(exitCode == 0, error);

        using JsonDocument document = JsonDocument.Parse(output);
        JsonElement root = document.RootElement;
        Assert.Equal(["ioctls", "structs", "constants"], root.EnumerateObject().Select(p => p.Name));

        var ioctls = root.GetProperty("ioctls").EnumerateObject().ToList();
        Assert.Equal(AbiCatalog.Ioctls.Select(i => i.Name), ioctls.Select(p => p.Name));
        Assert.Equal(AbiCatalog.Ioctls.Select(i => i.Value), ioctls.Select(p => p.Value.GetUInt32()));

        var structs = root.GetProperty("structs").EnumerateObject().ToList();
        Assert.Equal(AbiCatalog.Structs.Select(s => s.Name), structs.Select(p => p.Name));
        foreach (AbiStruct s in AbiCatalog.Structs)
        {
            JsonElement json = root.GetProperty("structs").GetProperty(s.Name);
            Assert.Equal(s.Size, json.GetProperty("size").GetInt32());
            Assert.Equal(
                s.Fields.Select(f => (f.Name, f.Offset)),
                json.GetProperty("fields").EnumerateObject().Select(p => (p.Name, p.Value.GetInt32())));
        }

        var constants = root.GetProperty("constants").EnumerateObject().ToList();
        Assert.Equal(AbiCatalog.Constants.Select(c => c.Name), constants.Select(p => p.Name));
        Assert.Equal(AbiCatalog.Constants.Select(c => c.Value), constants.Select(p => p.Value.GetInt64()));
    }

    [Fact]
    public void Abi_json_has_the_documented_shape()
    {
        (_, string output, _) = Run("abi", "--json");
        using JsonDocument document = JsonDocument.Parse(output);
        JsonElement root = document.RootElement;

        Assert.Equal(0x00184700u, root.GetProperty("ioctls").GetProperty("IOCTL_GNTDEV_MAP_GRANT_REF").GetUInt32());
        Assert.Equal(0x40086200u, root.GetProperty("ioctls").GetProperty("DMA_BUF_IOCTL_SYNC").GetUInt32());
        JsonElement map = root.GetProperty("structs").GetProperty("ioctl_gntdev_map_grant_ref");
        Assert.Equal(24, map.GetProperty("size").GetInt32());
        Assert.Equal(16, map.GetProperty("fields").GetProperty("refs").GetInt32());
        Assert.Equal(4, map.GetProperty("fields").GetProperty("pad").GetInt32());
        Assert.Equal(JsonValueKind.Number, root.GetProperty("constants").GetProperty("UNMAP_NOTIFY_SEND_EVENT").ValueKind);
    }

    [Fact]
    public void Abi_table_lists_ioctls_structs_and_constants()
    {
        (int exitCode, string output, string error) = Run("abi");
        Assert.True(exitCode == 0, error);
        Assert.Contains("IOCTL_GNTDEV_MAP_GRANT_REF", output, StringComparison.Ordinal);
        Assert.Contains("0x00184700", output, StringComparison.Ordinal);
        Assert.Contains("ioctl_gntalloc_alloc_gref", output, StringComparison.Ordinal);
        Assert.Contains("GNTALLOC_FLAG_WRITABLE", output, StringComparison.Ordinal);
        Assert.DoesNotContain("\u001b[", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Help_works_and_names_the_command_xenshare()
    {
        (int exitCode, string output, _) = Run("--help");
        Assert.Equal(0, exitCode);
        Assert.Contains("xenshare", output, StringComparison.Ordinal);
        Assert.Contains("abi", output, StringComparison.Ordinal);

        (exitCode, output, _) = Run("abi", "--help");
        Assert.Equal(0, exitCode);
        Assert.Contains("--json", output, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_option_fails()
    {
        (int exitCode, _, _) = Run("abi", "--no-such-option");
        Assert.NotEqual(0, exitCode);
    }
}
