using System.CommandLine;

namespace XenShare.Tests.Cli;

/// <summary>Runs <c>xenshare</c> in-process through the real command-line parser, capturing both streams.</summary>
internal static class CliRun
{
    /// <summary>The exit code and what the command wrote to standard output and standard error.</summary>
    public static (int ExitCode, string Output, string Error) Invoke(params string[] args)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        int exitCode = XenShare.Cli.Program.CreateRootCommand()
            .Parse(args)
            .Invoke(new InvocationConfiguration { Output = output, Error = error });
        return (exitCode, output.ToString(), error.ToString());
    }
}
