using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using XenShare.Abi;
using XenShare.Cli.Json;

namespace XenShare.Cli.Commands;

/// <summary><c>xenshare abi [--json]</c>: the ioctl numbers, struct layouts and constants of the ABI mirror.</summary>
internal static class AbiCommand
{
    /// <summary>Creates the <c>abi</c> command.</summary>
    public static Command Create()
    {
        var json = new Option<bool>("--json")
        {
            Description = "Print JSON: {\"ioctls\": {name: number}, \"structs\": {name: {\"size\", \"fields\": {name: offset}}}, \"constants\": {name: number}}.",
        };
        var command = new Command("abi", "Print the ioctl numbers, struct sizes and field offsets, and constants of XenShare's mirror of the Linux UAPI headers.");
        command.Options.Add(json);
        command.SetAction(parseResult =>
        {
            TextWriter output = parseResult.InvocationConfiguration.Output;
            if (parseResult.GetValue(json))
            {
                output.WriteLine(ToJson());
            }
            else
            {
                WriteTables(output);
            }

            return 0;
        });
        return command;
    }

    /// <summary>The catalog as indented JSON (numbers as JSON numbers, catalog order; System.Text.Json source
    /// generation, <see cref="CliJsonContext"/>).</summary>
    internal static string ToJson()
    {
        var ioctls = new OrderedDictionary<string, uint>();
        foreach (AbiIoctl ioctl in AbiCatalog.Ioctls) ioctls.Add(ioctl.Name, ioctl.Value);
        var structs = new OrderedDictionary<string, AbiStructJson>();
        foreach (AbiStruct abiStruct in AbiCatalog.Structs)
        {
            var fields = new OrderedDictionary<string, int>();
            foreach (AbiField field in abiStruct.Fields) fields.Add(field.Name, field.Offset);
            structs.Add(abiStruct.Name, new AbiStructJson(abiStruct.Size, fields));
        }
        var constants = new OrderedDictionary<string, long>();
        foreach (AbiConstant constant in AbiCatalog.Constants) constants.Add(constant.Name, constant.Value);
        return JsonSerializer.Serialize(new AbiJson(ioctls, structs, constants), CliJsonContext.Relaxed.AbiJson);
    }

    private static void WriteTables(TextWriter output)
    {
        var console = CliConsole.Create(output);
        foreach (var table in Tables()) console.Write(table);
    }

    /// <summary>The ioctls, structs and constants tables, built to fit 100 columns with every C name whole: the
    /// direction is _IOC's (none, w, r, rw), and the C path of an anonymous struct goes on lines of its own.</summary>
    internal static IReadOnlyList<Table> Tables()
    {
        var ioctls = new Table().Title("ioctls");
        ioctls.AddColumn(new TableColumn("name").NoWrap());
        ioctls.AddColumn(new TableColumn("header").NoWrap());
        ioctls.AddColumn(new TableColumn("number").NoWrap());
        ioctls.AddColumn(new TableColumn("dir").NoWrap());
        ioctls.AddColumn(new TableColumn("type").NoWrap());
        ioctls.AddColumn(new TableColumn("nr").RightAligned().NoWrap());
        ioctls.AddColumn(new TableColumn("size").RightAligned().NoWrap());
        foreach (AbiIoctl ioctl in AbiCatalog.Ioctls)
        {
            uint v = ioctl.Value;
            ioctls.AddRow(
                Cell(ioctl.Name),
                Cell(ioctl.Header),
                Cell("0x" + v.ToString("x8", CultureInfo.InvariantCulture)),
                Cell(DirName(Ioc.DirOf(v))),
                Cell("'" + Ioc.TypeOf(v) + "'"),
                Cell(Ioc.NrOf(v).ToString(CultureInfo.InvariantCulture)),
                Cell(Ioc.SizeOf(v).ToString(CultureInfo.InvariantCulture)));
        }

        var structs = new Table().Title("structs");
        structs.AddColumn(new TableColumn("name").NoWrap());
        structs.AddColumn(new TableColumn("header").NoWrap());
        structs.AddColumn(new TableColumn("size").RightAligned().NoWrap());
        structs.AddColumn("fields (name@offset:size)");
        int nameWidth = AbiCatalog.Structs.Max(s => s.Name.Length);
        foreach (AbiStruct abiStruct in AbiCatalog.Structs)
        {
            string fields = string.Join(" ", abiStruct.Fields.Select(f => string.Create(CultureInfo.InvariantCulture, $"{f.Name}@{f.Offset}:{f.Size}")));
            string name = abiStruct.AnonymousPath is null ? abiStruct.Name : abiStruct.Name + "\n" + CPath(abiStruct.AnonymousPath, nameWidth);
            structs.AddRow(
                Cell(name),
                Cell(abiStruct.Header),
                Cell(abiStruct.Size.ToString(CultureInfo.InvariantCulture)),
                Cell(fields));
        }

        var constants = new Table().Title("constants");
        constants.AddColumn(new TableColumn("name").NoWrap());
        constants.AddColumn(new TableColumn("header").NoWrap());
        constants.AddColumn(new TableColumn("value").RightAligned().NoWrap());
        foreach (AbiConstant constant in AbiCatalog.Constants)
        {
            constants.AddRow(
                Cell(constant.Name),
                Cell(constant.Header),
                Cell(constant.Value.ToString(CultureInfo.InvariantCulture)));
        }

        return [ioctls, structs, constants];
    }

    /// <summary>"(C: a.b.c)" broken before a '.' into lines of at most <paramref name="width"/> characters.</summary>
    private static string CPath(string path, int width)
    {
        var lines = new List<string>();
        string line = "(C: ";
        foreach (string part in path.Split('.'))
        {
            string piece = line.Length == 4 ? part : "." + part;
            if (line.Length > 4 && line.Length + piece.Length + 1 > width)
            {
                lines.Add(line);
                line = "  ";
            }
            line += piece;
        }
        lines.Add(line + ")");
        return string.Join("\n", lines);
    }

    private static Text Cell(string text) => new(text);

    /// <summary>_IOC's direction: none (_IO), w (_IOW), r (_IOR), rw (_IOWR).</summary>
    private static string DirName(uint dir) => dir switch
    {
        Ioc.None => "none",
        Ioc.Write => "w",
        Ioc.Read => "r",
        _ => "rw",
    };
}
