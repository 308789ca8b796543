using System.CommandLine;
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

    // Ctrl+C cancels the action's token; the demo needs a moment to tear down (stop both sides, release the
    // dma-bufs, run the leak check) before it exits with 130.
    private static Task<int> Main(string[] args) =>
        CreateRootCommand().Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = TimeSpan.FromSeconds(30) });
}
