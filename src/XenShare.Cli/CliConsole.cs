using Spectre.Console;

namespace XenShare.Cli;

/// <summary>
/// The Spectre.Console consoles the commands print their tables and notes with: on a terminal, its own width and
/// colours; redirected (a file, a pipe, a test's writer), <see cref="RedirectedWidth"/> columns and plain text.
/// Every table the CLI prints is built to read well in 100 columns (long cells wrap at word boundaries).
/// </summary>
internal static class CliConsole
{
    /// <summary>Columns of a console whose output is redirected: what the tables are built for.</summary>
    public const int RedirectedWidth = 100;

    /// <summary>A console writing to <paramref name="output"/>.</summary>
    /// <param name="output">Where the text goes.</param>
    /// <param name="interactive">Whether <paramref name="output"/> is a terminal (progress bars and colours).</param>
    /// <param name="width">Columns, overriding the rule above (tests render at a fixed width).</param>
    public static IAnsiConsole Create(TextWriter output, out bool interactive, int? width = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        var consoleOutput = new AnsiConsoleOutput(output);
        interactive = consoleOutput.IsTerminal;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = consoleOutput,
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (width is int w) console.Profile.Width = w;
        else if (!interactive) console.Profile.Width = RedirectedWidth;
        return console;
    }

    /// <summary>A console writing to <paramref name="output"/> (see <see cref="Create(TextWriter, out bool, int?)"/>).</summary>
    public static IAnsiConsole Create(TextWriter output, int? width = null) => Create(output, out _, width);

    /// <summary>Renders <paramref name="renderable"/> as plain text <paramref name="width"/> columns wide (what a
    /// redirected run prints).</summary>
    public static string Render(Spectre.Console.Rendering.IRenderable renderable, int width = RedirectedWidth)
    {
        using var writer = new StringWriter();
        Create(writer, width).Write(renderable);
        return writer.ToString();
    }
}
