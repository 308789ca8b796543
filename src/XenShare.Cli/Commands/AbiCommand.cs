using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Spectre.Console;
using XenShare.Abi;

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

    /// <summary>The catalog as indented JSON (numbers as JSON numbers, catalog order).</summary>
    internal static string ToJson()
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();

            writer.WriteStartObject("ioctls");
            foreach (AbiIoctl ioctl in AbiCatalog.Ioctls)
            {
                writer.WriteNumber(ioctl.Name, ioctl.Value);
            }

            writer.WriteEndObject();

            writer.WriteStartObject("structs");
            foreach (AbiStruct abiStruct in AbiCatalog.Structs)
            {
                writer.WriteStartObject(abiStruct.Name);
                writer.WriteNumber("size", abiStruct.Size);
                writer.WriteStartObject("fields");
                foreach (AbiField field in abiStruct.Fields)
                {
                    writer.WriteNumber(field.Name, field.Offset);
                }

                writer.WriteEndObject();
                writer.WriteEndObject();
            }

            writer.WriteEndObject();

            writer.WriteStartObject("constants");
            foreach (AbiConstant constant in AbiCatalog.Constants)
            {
                writer.WriteNumber(constant.Name, constant.Value);
            }

            writer.WriteEndObject();

            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteTables(TextWriter output)
    {
        var consoleOutput = new AnsiConsoleOutput(output);
        IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = consoleOutput,
            Ansi = consoleOutput.IsTerminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = consoleOutput.IsTerminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
        });
        if (!consoleOutput.IsTerminal)
        {
            // Redirected output defaults to 80 columns, which wraps the C names mid-word.
            console.Profile.Width = 160;
        }

        var ioctls = new Table().Title("ioctls");
        ioctls.AddColumns("name", "header", "number", "dir", "type", "nr", "size");
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

        console.Write(ioctls);

        var structs = new Table().Title("structs");
        structs.AddColumns("name", "header", "size", "fields (name@offset:size)");
        foreach (AbiStruct abiStruct in AbiCatalog.Structs)
        {
            string fields = string.Join(" ", abiStruct.Fields.Select(f => string.Create(CultureInfo.InvariantCulture, $"{f.Name}@{f.Offset}:{f.Size}")));
            string name = abiStruct.AnonymousPath is null ? abiStruct.Name : abiStruct.Name + " (C: " + abiStruct.AnonymousPath + ")";
            structs.AddRow(
                Cell(name),
                Cell(abiStruct.Header),
                Cell(abiStruct.Size.ToString(CultureInfo.InvariantCulture)),
                Cell(fields));
        }

        console.Write(structs);

        var constants = new Table().Title("constants");
        constants.AddColumns("name", "header", "value");
        foreach (AbiConstant constant in AbiCatalog.Constants)
        {
            constants.AddRow(
                Cell(constant.Name),
                Cell(constant.Header),
                Cell(constant.Value.ToString(CultureInfo.InvariantCulture)));
        }

        console.Write(constants);
    }

    private static Text Cell(string text) => new(text);

    private static string DirName(uint dir) => dir switch
    {
        Ioc.None => "none",
        Ioc.Write => "write",
        Ioc.Read => "read",
        _ => "read|write",
    };
}
