using DisplifAbi = XenShare.Abi.Displif;
using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;
using XenShare.Abi;
using XenShare.Rings;

namespace XenShare.Tests.Abi;

/// <summary>
/// Proves the C# ABI mirror against the system's own UAPI headers: a C program generated from
/// <see cref="AbiCatalog"/> prints every sizeof, offsetof, ioctl number and constant as the C compiler
/// sees them, and each is compared with the C# value.
/// </summary>
public sealed class AbiHeaderTests
{
    private static readonly TimeSpan ProcessTimeout = TimeSpan.FromMinutes(2);

    [Fact]
    public async Task Every_catalog_value_matches_the_system_headers()
    {
        Dictionary<string, long> expected = ExpectedValues();
        string source = GenerateCSource();

        DirectoryInfo dir = Directory.CreateTempSubdirectory("xenshare-abi-");
        try
        {
            string cFile = Path.Combine(dir.FullName, "abi.c");
            string exe = Path.Combine(dir.FullName, "abi");
            await File.WriteAllTextAsync(cFile, source);

            // xen/io/xs_wire.h comes from Debian's libxen-dev: installed, or unpacked into a cache by the script.
            ProcessResult headers = await RunAsync("bash", [Path.Combine(TestPaths.RepositoryRoot(), "tools", "libxen-headers.sh")],
                "bash is required to locate the libxen-dev headers");
            Assert.True(headers.ExitCode == 0, "tools/libxen-headers.sh could not provide xen/io/xs_wire.h:\n" + headers.StdErr);
            string xenInclude = headers.StdOut.Trim();

            ProcessResult gcc = await RunAsync("gcc", ["-std=gnu11", "-Wall", "-idirafter", xenInclude, "-o", exe, cFile],
                "gcc is required by the ABI test (apt-get install gcc linux-libc-dev)");
            Assert.True(gcc.ExitCode == 0,
                "gcc could not compile the generated ABI probe (are gcc and linux-libc-dev, which provides "
                + "/usr/include/xen/*.h and /usr/include/linux/dma-buf.h, installed?):\n"
                + gcc.StdErr + "\n--- source ---\n" + source);

            ProcessResult run = await RunAsync(exe, [], "the compiled ABI probe could not be started");
            Assert.True(run.ExitCode == 0, "ABI probe exited with " + run.ExitCode + ":\n" + run.StdErr);

            Dictionary<string, long> actual = ParseProbeOutput(run.StdOut, out Dictionary<string, string> actualStrings);

            var mismatches = new List<string>();
            foreach ((string key, long value) in expected)
            {
                if (!actual.TryGetValue(key, out long cValue))
                {
                    mismatches.Add($"{key}: C# {Show(value)}, C printed nothing");
                }
                else if (cValue != value)
                {
                    mismatches.Add($"{key}: C# {Show(value)}, C {Show(cValue)}");
                }
            }

            foreach (string key in actual.Keys.Where(k => !expected.ContainsKey(k)))
            {
                mismatches.Add($"{key}: printed by C but not expected by the catalog");
            }

            foreach (AbiStringConstant constant in AbiCatalog.StringConstants)
            {
                string key = "str " + constant.Name;
                if (!actualStrings.TryGetValue(key, out string? cValue))
                {
                    mismatches.Add($"{key}: C# \"{constant.Value}\", C printed nothing");
                }
                else if (cValue != constant.Value)
                {
                    mismatches.Add($"{key}: C# \"{constant.Value}\", C \"{cValue}\"");
                }
            }

            Assert.True(mismatches.Count == 0,
                $"{mismatches.Count} of {expected.Count} ABI values differ from the system headers:\n  "
                + string.Join("\n  ", mismatches));
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    [Fact]
    public void Catalog_covers_every_struct_of_the_Abi_namespace()
    {
        var catalogued = AbiCatalog.Structs.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var missing = AbiTypes()
            .Where(t => t.IsValueType && !t.IsEnum && !t.IsPrimitive)
            .Select(t => t.Name)
            .Where(n => !catalogued.Contains(n))
            .Order(StringComparer.Ordinal)
            .ToList();
        Assert.True(missing.Count == 0, "structs missing from AbiCatalog: " + string.Join(", ", missing));
    }

    [Fact]
    public void Catalog_covers_every_ioctl_number_of_the_Abi_namespace()
    {
        var catalogued = AbiCatalog.Ioctls.Select(i => i.Name).ToHashSet(StringComparer.Ordinal);
        var missing = new List<string>();
        foreach (Type type in AbiTypes())
        {
            foreach (FieldInfo field in type.GetFields(BindingFlags.Public | BindingFlags.Static))
            {
                if (field.IsInitOnly && field.FieldType == typeof(uint) && !catalogued.Contains(field.Name))
                {
                    missing.Add(type.Name + "." + field.Name);
                }
            }
        }

        Assert.True(missing.Count == 0, "ioctl numbers missing from AbiCatalog: " + string.Join(", ", missing));
        Assert.Equal(8, AbiCatalog.IoctlClasses.Count);
    }

    [Fact]
    public void Catalog_names_are_unique_and_fields_lie_inside_their_struct()
    {
        Assert.Equal(AbiCatalog.Ioctls.Count, AbiCatalog.Ioctls.Select(i => i.Name).Distinct().Count());
        Assert.Equal(AbiCatalog.Structs.Count, AbiCatalog.Structs.Select(s => s.Name).Distinct().Count());
        Assert.Equal(AbiCatalog.Constants.Count, AbiCatalog.Constants.Select(c => c.Name).Distinct().Count());
        foreach (AbiStruct s in AbiCatalog.Structs)
        {
            Assert.NotEmpty(s.Fields);
            Assert.All(s.Fields, f => Assert.InRange(f.Offset + f.Size, 1, s.Size));
            Assert.All(s.Fields, f => Assert.DoesNotContain("@", f.Name, StringComparison.Ordinal));
        }

        Assert.True(AbiCatalog.FindStruct("gntdev_grant_copy_ptr")!.IsUnion);
        Assert.Equal(["domid", "ref"], AbiCatalog.FindStruct("ioctl_gntdev_grant_ref")!.Fields.Select(f => f.Name));
    }

    [Theory]
    [InlineData("IOCTL_GNTDEV_MAP_GRANT_REF", 0x00184700u)]
    [InlineData("IOCTL_GNTDEV_UNMAP_GRANT_REF", 0x00104701u)]
    [InlineData("IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR", 0x00184702u)]
    [InlineData("IOCTL_GNTDEV_SET_MAX_GRANTS", 0x00044703u)]
    [InlineData("IOCTL_GNTDEV_SET_UNMAP_NOTIFY", 0x00104707u)]
    [InlineData("IOCTL_GNTDEV_GRANT_COPY", 0x00104708u)]
    [InlineData("IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS", 0x00144709u)]
    [InlineData("IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED", 0x0008470au)]
    [InlineData("IOCTL_GNTDEV_DMABUF_IMP_TO_REFS", 0x0014470bu)]
    [InlineData("IOCTL_GNTDEV_DMABUF_IMP_RELEASE", 0x0008470cu)]
    [InlineData("IOCTL_GNTALLOC_ALLOC_GREF", 0x00184705u)]
    [InlineData("IOCTL_GNTALLOC_DEALLOC_GREF", 0x00104706u)]
    [InlineData("IOCTL_GNTALLOC_SET_UNMAP_NOTIFY", 0x00104707u)]
    [InlineData("IOCTL_EVTCHN_BIND_VIRQ", 0x00044500u)]
    [InlineData("IOCTL_EVTCHN_BIND_INTERDOMAIN", 0x00084501u)]
    [InlineData("IOCTL_EVTCHN_BIND_UNBOUND_PORT", 0x00044502u)]
    [InlineData("IOCTL_EVTCHN_UNBIND", 0x00044503u)]
    [InlineData("IOCTL_EVTCHN_NOTIFY", 0x00044504u)]
    [InlineData("IOCTL_EVTCHN_RESET", 0x00004505u)]
    [InlineData("IOCTL_EVTCHN_RESTRICT_DOMID", 0x00024506u)]
    [InlineData("DMA_BUF_IOCTL_SYNC", 0x40086200u)]
    [InlineData("DMA_BUF_SET_NAME_B", 0x40086201u)]
    [InlineData("DMA_BUF_IOCTL_EXPORT_SYNC_FILE", 0xc0086202u)]
    [InlineData("DMA_BUF_IOCTL_IMPORT_SYNC_FILE", 0x40086203u)]
    public void Ioctl_numbers_match_the_spec_table(string name, uint expected)
    {
        AbiIoctl? ioctl = AbiCatalog.FindIoctl(name);
        Assert.NotNull(ioctl);
        Assert.Equal(expected, ioctl.Value);
    }

    [Fact]
    public void Pinned_fields_of_the_ioctl_classes_match_the_spec()
    {
        Assert.Equal(0x00184700u, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF);
        Assert.Equal(0x40086200u, DmaBufIoctl.DMA_BUF_IOCTL_SYNC);
        Assert.Equal(16, GntDevIoctl.MapGrantRefRefsOffset);
        Assert.Equal(16, GntDevIoctl.DmaBufRefsOffset);
        Assert.Equal(16, GntAllocIoctl.GrefIdsOffset);
        Assert.Equal(24, Unsafe.SizeOf<gntdev_grant_copy_segment>());
        Assert.Equal(GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY);
    }

    [Theory]
    [InlineData("GNTDEV_DMA_FLAG_WC", 1)]
    [InlineData("GNTDEV_DMA_FLAG_COHERENT", 2)]
    [InlineData("UNMAP_NOTIFY_CLEAR_BYTE", 1)]
    [InlineData("UNMAP_NOTIFY_SEND_EVENT", 2)]
    [InlineData("GNTALLOC_FLAG_WRITABLE", 1)]
    [InlineData("DMA_BUF_SYNC_READ", 1)]
    [InlineData("DMA_BUF_SYNC_WRITE", 2)]
    [InlineData("DMA_BUF_SYNC_RW", 3)]
    [InlineData("DMA_BUF_SYNC_START", 0)]
    [InlineData("DMA_BUF_SYNC_END", 4)]
    [InlineData("XENDISPL_PROTOCOL_VERSION_INT", 2)]
    [InlineData("XENDISPL_OP_DBUF_CREATE", 0x10)]
    [InlineData("XENDISPL_OP_GET_EDID", 0x16)]
    [InlineData("XENDISPL_EVT_PG_FLIP", 0)]
    [InlineData("XENDISPL_DBUF_FLG_REQ_ALLOC", 1)]
    [InlineData("XENDISPL_IN_RING_OFFS", 64)]
    [InlineData("XENDISPL_IN_RING_SIZE", 4032)]
    [InlineData("XENDISPL_IN_RING_LEN", 63)]
    [InlineData("XENDISPL_EDID_MAX_SIZE", 32768)]
    public void Constants_match_the_spec(string name, long expected)
    {
        AbiConstant? constant = AbiCatalog.FindConstant(name);
        Assert.NotNull(constant);
        Assert.Equal(expected, constant.Value);
    }

    [Theory]
    [InlineData("ioctl_gntdev_map_grant_ref", 24, "count", 0, "pad", 4, "index", 8, "refs", 16)]
    [InlineData("ioctl_gntalloc_alloc_gref", 24, "domid", 0, "flags", 2, "count", 4, "index", 8, "gref_ids", 16)]
    [InlineData("ioctl_gntdev_dmabuf_exp_from_refs", 20, "flags", 0, "count", 4, "fd", 8, "domid", 12, "refs", 16)]
    [InlineData("gntdev_grant_copy_segment", 24, "source", 0, "dest", 8, "len", 16, "flags", 18, "status", 20)]
    [InlineData("xendispl_req", 64, "id", 0, "operation", 2, "reserved", 3, "op", 8)]
    [InlineData("xendispl_resp", 64, "id", 0, "operation", 2, "reserved", 3, "status", 4, "op", 8)]
    [InlineData("xendispl_evt", 64, "id", 0, "type", 2, "reserved", 3, "op", 8)]
    [InlineData("xendispl_dbuf_create_req", 40, "dbuf_cookie", 0, "width", 8, "height", 12, "bpp", 16, "buffer_sz", 20, "flags", 24, "gref_directory", 28, "data_ofs", 32)]
    [InlineData("xendispl_page_directory", 8, "gref_dir_next_page", 0, "gref", 4)]
    [InlineData("xen_displif_sring", 128, "req_prod", 0, "req_event", 4, "rsp_prod", 8, "rsp_event", 12, "pvt", 16, "__pad", 20, "ring", 64)]
    [InlineData("xendispl_event_page", 64, "in_cons", 0, "in_prod", 4, "reserved", 8)]
    public void Struct_layouts_match_the_spec(string name, int size, params object[] fieldsAndOffsets)
    {
        AbiStruct? s = AbiCatalog.FindStruct(name);
        Assert.NotNull(s);
        Assert.Equal(size, s.Size);
        var expected = new List<(string, int)>();
        for (int i = 0; i < fieldsAndOffsets.Length; i += 2)
        {
            expected.Add(((string)fieldsAndOffsets[i], (int)fieldsAndOffsets[i + 1]));
        }

        Assert.Equal(expected, s.Fields.Select(f => (f.Name, f.Offset)));
    }

    [Theory]
    [InlineData("XENDISPL_PROTOCOL_VERSION", "2")]
    [InlineData("XENDISPL_FIELD_BE_VERSIONS", "versions")]
    [InlineData("XENDISPL_FIELD_FE_VERSION", "version")]
    [InlineData("XENDISPL_FIELD_REQ_RING_REF", "req-ring-ref")]
    [InlineData("XENDISPL_FIELD_REQ_CHANNEL", "req-event-channel")]
    [InlineData("XENDISPL_FIELD_EVT_RING_REF", "evt-ring-ref")]
    [InlineData("XENDISPL_FIELD_EVT_CHANNEL", "evt-event-channel")]
    [InlineData("XENDISPL_FIELD_RESOLUTION", "resolution")]
    [InlineData("XENDISPL_FIELD_BE_ALLOC", "be-alloc")]
    [InlineData("XENDISPL_FIELD_UNIQUE_ID", "unique-id")]
    public void Displif_string_constants_match_the_spec(string name, string expected)
    {
        AbiStringConstant? constant = AbiCatalog.FindStringConstant(name);
        Assert.NotNull(constant);
        Assert.Equal(expected, constant.Value);
        Assert.Equal(AbiCatalog.DisplifHeader, constant.Header);
    }

    [Fact]
    public void Displif_unions_are_unions_and_the_ring_entry_is_64_bytes()
    {
        Assert.True(AbiCatalog.FindStruct("xendispl_req_op")!.IsUnion);
        Assert.Equal(56, AbiCatalog.FindStruct("xendispl_req_op")!.Size);
        Assert.True(AbiCatalog.FindStruct("xen_displif_sring_entry")!.IsUnion);
        Assert.Equal(64, AbiCatalog.FindStruct("xen_displif_sring_entry")!.Size);
        Assert.Equal(32, SharedRingLayout.EntryCount(4096, 64));
        Assert.Equal(63, DisplifAbi.XENDISPL_IN_RING_LEN);
    }

    [Theory]
    [InlineData(Ioc.None, 'G', 0u, 24)]
    [InlineData(Ioc.Write, 'b', 0u, 8)]
    [InlineData(Ioc.Read, 'x', 0xffu, 0x3fff)]
    [InlineData(Ioc.Read | Ioc.Write, 'b', 2u, 8)]
    [InlineData(Ioc.None, 'E', 5u, 0)]
    public void Ioc_encoding_round_trips(uint dir, char type, uint nr, int size)
    {
        uint request = Ioc.Encode(dir, type, nr, size);
        Assert.Equal(dir, Ioc.DirOf(request));
        Assert.Equal(type, Ioc.TypeOf(request));
        Assert.Equal(nr, Ioc.NrOf(request));
        Assert.Equal(size, Ioc.SizeOf(request));
        Assert.Equal((dir << 30) | ((uint)size << 16) | ((uint)type << 8) | nr, request);
    }

    [Fact]
    public void Every_catalog_ioctl_decodes_and_re_encodes_to_itself()
    {
        foreach (AbiIoctl ioctl in AbiCatalog.Ioctls)
        {
            uint v = ioctl.Value;
            Assert.Equal(v, Ioc.Encode(Ioc.DirOf(v), Ioc.TypeOf(v), Ioc.NrOf(v), Ioc.SizeOf(v)));
        }
    }

    [Fact]
    public void Ioc_encode_rejects_out_of_range_fields()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.Encode(Ioc.None, 'G', 0, 1 << 14));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.Encode(Ioc.None, 'G', 0, -1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.Encode(4, 'G', 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => Ioc.Encode(Ioc.None, 'G', 0x100, 0));
    }

    // ---- the C probe ----

    /// <summary>Every value the C program must print, keyed as the program prints it.</summary>
    internal static Dictionary<string, long> ExpectedValues()
    {
        var values = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (AbiIoctl ioctl in AbiCatalog.Ioctls)
        {
            values.Add("ioctl " + ioctl.Name, ioctl.Value);
        }

        foreach (AbiStruct s in AbiCatalog.Structs)
        {
            values.Add("sizeof " + s.Name, s.Size);
            foreach (AbiField f in s.Fields)
            {
                values.Add("offsetof " + s.Name + "." + f.Name, f.Offset);
                values.Add("fieldsize " + s.Name + "." + f.Name, f.Size);
            }
        }

        foreach (AbiConstant c in AbiCatalog.Constants)
        {
            values.Add("const " + c.Name, c.Value);
        }

        foreach ((string key, _, long value) in RingFacts())
        {
            values.Add(key, value);
        }

        return values;
    }

    /// <summary>The C probe: prints "key value" lines, one per <see cref="ExpectedValues"/> entry.</summary>
    internal static string GenerateCSource()
    {
        var c = new StringBuilder();
        c.AppendLine("/* Generated by XenShare.Tests.Abi.AbiHeaderTests from AbiCatalog. */");
        c.AppendLine("#include <linux/types.h>");
        c.AppendLine("#include <stdint.h>");   // xen/io/xs_wire.h uses uint32_t
        c.AppendLine("#include <errno.h>");    // and its error table the errno macros
        c.AppendLine("typedef __u32 grant_ref_t;");
        c.AppendLine("typedef __u16 domid_t;");
        foreach (string header in AbiCatalog.Headers)
        {
            c.AppendLine(CultureInfo.InvariantCulture, $"#include <{header}>");
        }

        c.AppendLine("#include <stddef.h>");
        c.AppendLine("#include <stdio.h>");
        c.AppendLine();

        // Rings of other entry sizes, to check SharedRingLayout.EntryCount against __CONST_RING_SIZE (RG01).
        foreach ((int request, int response) in ProbeRingEntrySizes)
        {
            c.AppendLine(CultureInfo.InvariantCulture, $"struct probe_req_{request} {{ unsigned char b[{request}]; }};");
            if (response != request)
                c.AppendLine(CultureInfo.InvariantCulture, $"struct probe_rsp_{response} {{ unsigned char b[{response}]; }};");
            string rsp = response != request ? $"probe_rsp_{response}" : $"probe_req_{request}";
            c.AppendLine(CultureInfo.InvariantCulture, $"DEFINE_RING_TYPES(probe_{request}_{response}, struct probe_req_{request}, struct {rsp});");
        }

        c.AppendLine();
        c.AppendLine("int main(void)");
        c.AppendLine("{");

        foreach (AbiIoctl ioctl in AbiCatalog.Ioctls)
        {
            Print(c, "ioctl " + ioctl.Name, "unsigned long long", ioctl.Name);
        }

        foreach (AbiStruct s in AbiCatalog.Structs)
        {
            // A named struct is reached as `struct name`; an anonymous one (the source/dest union of
            // gntdev_grant_copy_segment and its `foreign` struct) through a member of a named struct.
            string container;
            string prefix;
            if (s.AnonymousPath is null)
            {
                container = (s.IsUnion ? "union " : "struct ") + s.Name;
                prefix = "";
            }
            else
            {
                int dot = s.AnonymousPath.IndexOf('.', StringComparison.Ordinal);
                container = "struct " + s.AnonymousPath[..dot];
                prefix = s.AnonymousPath[(dot + 1)..] + ".";
            }

            string sizeExpr = s.AnonymousPath is null
                ? $"sizeof({container})"
                : $"sizeof((({container} *)0)->{prefix.TrimEnd('.')})";
            Print(c, "sizeof " + s.Name, "unsigned long long", sizeExpr);
            foreach (AbiField f in s.Fields)
            {
                string offsetExpr = s.AnonymousPath is null
                    ? $"offsetof({container}, {f.Name})"
                    : $"offsetof({container}, {prefix}{f.Name}) - offsetof({container}, {prefix.TrimEnd('.')})";
                Print(c, "offsetof " + s.Name + "." + f.Name, "unsigned long long", offsetExpr);
                Print(c, "fieldsize " + s.Name + "." + f.Name, "unsigned long long", $"sizeof((({container} *)0)->{prefix}{f.Name})");
            }
        }

        foreach (AbiConstant constant in AbiCatalog.Constants)
        {
            Print(c, "const " + constant.Name, "long long", constant.Name);
        }

        foreach (AbiStringConstant constant in AbiCatalog.StringConstants)
        {
            c.AppendLine(CultureInfo.InvariantCulture, $"    printf(\"str {constant.Name}=%s\\n\", {constant.Name});");
        }

        foreach ((string key, string expression, _) in RingFacts())
        {
            Print(c, key, "unsigned long long", expression);
        }

        c.AppendLine("    return 0;");
        c.AppendLine("}");
        return c.ToString();
    }

    /// <summary>Request and response sizes of the extra rings the probe defines (distinct request sizes).</summary>
    private static readonly (int Request, int Response)[] ProbeRingEntrySizes = [(8, 8), (24, 16), (40, 112), (64, 64), (120, 120), (1000, 200), (4032, 8)];

    /// <summary>Ring sizes in bytes the facts are checked at: one page, several pages, and a half page.</summary>
    private static readonly int[] ProbeRingBytes = [4096, 8192, 3 * 4096, 16384, 2048];

    /// <summary>
    /// ring.h's layout facts (RG01) against XenShare.Rings: the header size (offsetof(sring, ring)), the
    /// union's size, and <c>__CONST_RING_SIZE</c> for displif's ring and for rings of other entry sizes
    /// over one and several pages. Key, C expression, C# value.
    /// </summary>
    internal static IEnumerable<(string Key, string Expression, long Value)> RingFacts()
    {
        int displifEntry = Math.Max(Unsafe.SizeOf<xendispl_req>(), Unsafe.SizeOf<xendispl_resp>());
        yield return ("ring xen_displif header", "offsetof(struct xen_displif_sring, ring)", SharedRingLayout.HeaderSize);
        yield return ("ring xen_displif entry", "sizeof(union xen_displif_sring_entry)", displifEntry);
        yield return ("ring xen_displif req_prod", "offsetof(struct xen_displif_sring, req_prod)", SharedRingLayout.RequestProducerOffset);
        yield return ("ring xen_displif req_event", "offsetof(struct xen_displif_sring, req_event)", SharedRingLayout.RequestEventOffset);
        yield return ("ring xen_displif rsp_prod", "offsetof(struct xen_displif_sring, rsp_prod)", SharedRingLayout.ResponseProducerOffset);
        yield return ("ring xen_displif rsp_event", "offsetof(struct xen_displif_sring, rsp_event)", SharedRingLayout.ResponseEventOffset);
        foreach (int bytes in ProbeRingBytes)
        {
            yield return (string.Create(CultureInfo.InvariantCulture, $"ring xen_displif entries {bytes}"),
                string.Create(CultureInfo.InvariantCulture, $"__CONST_RING_SIZE(xen_displif, {bytes})"),
                SharedRingLayout.EntryCount(bytes, displifEntry));
        }

        foreach ((int request, int response) in ProbeRingEntrySizes)
        {
            string name = string.Create(CultureInfo.InvariantCulture, $"probe_{request}_{response}");
            int entry = Math.Max(request, response);
            yield return ("ring " + name + " entry", $"sizeof(union {name}_sring_entry)", entry);
            yield return ("ring " + name + " header", $"offsetof(struct {name}_sring, ring)", SharedRingLayout.HeaderSize);
            foreach (int bytes in ProbeRingBytes)
            {
                yield return (string.Create(CultureInfo.InvariantCulture, $"ring {name} entries {bytes}"),
                    string.Create(CultureInfo.InvariantCulture, $"__CONST_RING_SIZE({name}, {bytes})"),
                    SharedRingLayout.EntryCount(bytes, entry));
            }
        }
    }

    private static void Print(StringBuilder c, string key, string cType, string expression)
    {
        string format = cType == "long long" ? "%lld" : "%llu";
        c.AppendLine(CultureInfo.InvariantCulture, $"    printf(\"{key} {format}\\n\", ({cType})({expression}));");
    }

    private static Dictionary<string, long> ParseProbeOutput(string output, out Dictionary<string, string> strings)
    {
        var values = new Dictionary<string, long>(StringComparer.Ordinal);
        strings = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (line.StartsWith("str ", StringComparison.Ordinal))
            {
                int equals = line.IndexOf('=', StringComparison.Ordinal);
                strings[line[..equals]] = line[(equals + 1)..];
                continue;
            }

            int space = line.LastIndexOf(' ');
            string key = line[..space];
            string number = line[(space + 1)..];
            long value = number.StartsWith('-')
                ? long.Parse(number, CultureInfo.InvariantCulture)
                : checked((long)ulong.Parse(number, CultureInfo.InvariantCulture));
            values[key] = value;
        }

        return values;
    }

    private static string Show(long value) =>
        value is >= 0 and <= uint.MaxValue && value > 9
            ? string.Create(CultureInfo.InvariantCulture, $"{value} (0x{value:x})")
            : value.ToString(CultureInfo.InvariantCulture);

    private static IEnumerable<Type> AbiTypes() =>
        typeof(AbiCatalog).Assembly.GetTypes().Where(t => t.IsPublic && t.Namespace == "XenShare.Abi");

    private sealed record ProcessResult(int ExitCode, string StdOut, string StdErr);

    private static async Task<ProcessResult> RunAsync(string fileName, string[] arguments, string whatIfMissing)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("Process.Start returned null for " + fileName);
        }
        catch (Win32Exception e)
        {
            Assert.Fail($"{whatIfMissing}: cannot run '{fileName}': {e.Message}");
            throw;
        }

        using (process)
        {
            using var timeout = new CancellationTokenSource(ProcessTimeout);
            Task<string> stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
            Task<string> stderr = process.StandardError.ReadToEndAsync(timeout.Token);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"'{fileName}' did not finish within {ProcessTimeout}.");
            }

            return new ProcessResult(process.ExitCode, await stdout, await stderr);
        }
    }
}
