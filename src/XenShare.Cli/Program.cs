using System.CommandLine;
using System.CommandLine.Invocation;
using XenShare.Cli.Commands;

namespace XenShare.Cli;

/// <summary>The <c>xenshare</c> command line: one subcommand per file under <c>Commands/</c>.</summary>
internal static class Program
{
    /// <summary>Builds the root command with every subcommand (tests parse and invoke it in-process).</summary>
    internal static RootCommand CreateRootCommand()
    {
        var root = new RootCommand("XenShare: Xen grant sharing (gntdev, gntalloc, evtchn, dma-buf) on an emulated or real Xen host.")
        {
            HelpName = "xenshare",
        };

        // Subcommands. Each lives in Commands/<Name>Command.cs as `internal static class <Name>Command`
        // with `public static Command Create()`; add one line here per subcommand, e.g.
        //   root.Subcommands.Add(DemoCommand.Create());   // xenshare demo
        //   root.Subcommands.Add(BenchCommand.Create());  // xenshare bench
        //   root.Subcommands.Add(InfoCommand.Create());   // xenshare info
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(AbiCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(XenstoredCommand.Create());
        root.Subcommands.Add(DisplayBackendCommand.Create());

        return root;
    }

    /// <summary>How long a command may take to tear down after SIGINT or SIGTERM (the demo stops both sides, releases
    /// the dma-bufs and runs the leak check).</summary>
    private static readonly TimeSpan TeardownGrace = TimeSpan.FromSeconds(30);

    // SIGINT and SIGTERM cancel the action's token (TerminationSignals, not System.CommandLine's own handler, so that
    // the exit code says which signal it was: 130 or 143).
    private static async Task<int> Main(string[] args)
    {
        var parseResult = CreateRootCommand().Parse(args);
        using var signals = new TerminationSignals(parseResult.Action is AsynchronousCommandLineAction, TeardownGrace);
        int exitCode = await parseResult.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null }, signals.Token).ConfigureAwait(false);
        return signals.ExitCode(exitCode);
    }
}
