using BenchmarkDotNet.Running;

namespace XenShare.Benchmarks;

/// <summary>Detailed, slower measurements behind <c>xenshare bench</c> (which reports the targets as
/// same-run ratios). Run e.g. <c>dotnet run -c Release --project bench/XenShare.Benchmarks -- --filter *GrantCopy*</c>.</summary>
internal static class Program
{
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
