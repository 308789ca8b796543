using System.IO.Compression;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using Xunit.Abstractions;

namespace XenShare.Tests.Packaging;

/// <summary>
/// Packing builds three projects from scratch (about a minute on two cores): run alone, so that it neither
/// slows the other tests' timeouts nor is slowed by them.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PackagingGroup
{
    public const string Name = "Packaging";
}

/// <summary>
/// The NuGet packages as users get them: <c>dotnet pack</c> of XenShare, XenShare.Emulation and the
/// xenshare tool (XenShare.Tool) in a temporary copy (<see cref="PackedPackages"/>), their nuspecs, their
/// symbol packages, and the tool installed from the package folder into a temporary tool path and run.
/// </summary>
[Collection(PackagingGroup.Name)]
[Trait("Category", "Packaging")]
public sealed partial class PackageTests(PackedPackages packed, ITestOutputHelper output) : IClassFixture<PackedPackages>
{
    private const string RepositoryUrl = "https://github.com/xenshare/xenshare";
    private static readonly TimeSpan InstallTimeout = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan RunTimeout = TimeSpan.FromMinutes(2);

    public static TheoryData<string> Ids => new(PackedPackages.Ids);

    [GeneratedRegex(@"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")]
    private static partial Regex SemVer();

    // "file(1,2): warning CS1234: ...", "MinVer : warning MINVER1001: ...", "...targets(25,5): warning : ..."
    [GeneratedRegex(@":\s*warning\s*[A-Za-z0-9]*\s*:")]
    private static partial Regex MSBuildWarning();

    [Fact]
    public void Pack_Succeeds_WithoutWarnings()
    {
        ChildResult pack = packed.Pack!;
        output.WriteLine($"copy + dotnet pack: {packed.Elapsed.TotalSeconds:F1} s (commit {packed.Commit ?? "none: packed without git"})");
        Assert.True(pack.ExitCode == 0, pack.Describe());
        // Warnings are errors for the compiler; MSBuild's own (SourceLink, MinVer, NuGet pack) are not, so
        // they are checked here. Packed without git, MinVer and SourceLink rightly warn.
        if (packed.Commit is not null)
            Assert.False(MSBuildWarning().IsMatch(pack.StdOut + pack.StdErr), pack.Describe());
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void Nuspec_HasTheProjectsMetadata(string id)
    {
        XElement metadata = ReadNuspec(packed.PackagePath(id), out var entries);
        string Field(string name) => metadata.Elements().SingleOrDefault(e => e.Name.LocalName == name)?.Value.Trim() ?? "";

        Assert.Equal(id, Field("id"));
        Assert.Matches(SemVer(), Field("version"));
        Assert.NotEqual("1.0.0", Field("version"));   // the SDK's default: MinVer did not run
        Assert.Equal("XenShare contributors", Field("authors"));

        XElement license = metadata.Elements().Single(e => e.Name.LocalName == "license");
        Assert.Equal("expression", license.Attribute("type")?.Value);
        Assert.Equal("MIT", license.Value.Trim());

        Assert.Equal("README.md", Field("readme"));
        Assert.Contains("README.md", entries);
        Assert.Equal(RepositoryUrl, Field("projectUrl"));

        string description = Field("description");
        Assert.False(string.IsNullOrWhiteSpace(description));
        Assert.NotEqual("Package Description", description);
        Assert.Contains("xen", Field("tags").Split(' '));
        Assert.Contains("XenShare contributors", Field("copyright"), StringComparison.Ordinal);

        XElement repository = metadata.Elements().Single(e => e.Name.LocalName == "repository");
        Assert.Equal("git", repository.Attribute("type")?.Value);
        Assert.Equal(RepositoryUrl, repository.Attribute("url")?.Value);
        if (packed.Commit is not null) Assert.Equal(packed.Commit, repository.Attribute("commit")?.Value);
    }

    [Fact]
    public void Packages_ShareOneVersion_AndDependOnEachOtherAtIt()
    {
        string version = Version("XenShare");
        Assert.All(PackedPackages.Ids, id => Assert.Equal(version, Version(id)));

        // XenShare.Emulation uses the library's internals: it depends on the XenShare of its own build.
        XElement emulation = ReadNuspec(packed.PackagePath("XenShare.Emulation"), out _);
        var dependencies = emulation.Descendants().Where(e => e.Name.LocalName == "dependency").ToList();
        XElement library = Assert.Single(dependencies, d => d.Attribute("id")?.Value == "XenShare");
        Assert.Contains(version, library.Attribute("version")?.Value ?? "", StringComparison.Ordinal);

        // The tool carries its dependencies inside; a tool package declares none.
        XElement tool = ReadNuspec(packed.PackagePath("XenShare.Tool"), out var toolEntries);
        Assert.DoesNotContain(tool.Descendants(), e => e.Name.LocalName == "dependency");
        Assert.Contains(tool.Descendants(), e => e.Name.LocalName == "packageType" && e.Attribute("name")?.Value == "DotnetTool");
        Assert.Contains("tools/net10.0/any/XenShare.Cli.dll", toolEntries);
        Assert.Contains("tools/net10.0/any/DotnetToolSettings.xml", toolEntries);
    }

    [Theory]
    [MemberData(nameof(Ids))]
    public void SymbolPackage_HasThePdbs(string id)
    {
        string snupkg = packed.PackagePath(id, symbols: true);
        using ZipArchive zip = ZipFile.OpenRead(snupkg);
        Assert.Contains(zip.Entries, e => e.FullName.EndsWith(".pdb", StringComparison.Ordinal));
    }

    [Fact]
    public void Readme_IsTheRepositorysReadme()
    {
        using ZipArchive zip = ZipFile.OpenRead(packed.PackagePath("XenShare"));
        using var reader = new StreamReader(zip.GetEntry("README.md")!.Open());
        Assert.Equal(File.ReadAllText(Path.Combine(packed.Repository, "README.md")), reader.ReadToEnd());
    }

    [Fact]
    public async Task Tool_InstallsFromThePackageFolder_AndRuns()
    {
        string version = Version("XenShare.Tool");
        string toolPath = Path.Combine(packed.Root, "tool");
        // Only the package folder as a source, and a private package cache: nothing is fetched from a feed
        // and nothing of this build lands in the user's ~/.nuget/packages.
        string config = Path.Combine(packed.Root, "nuget.config");
        File.WriteAllText(config, "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<configuration>\n  <packageSources>\n    <clear />\n  </packageSources>\n</configuration>\n");
        var isolated = new Dictionary<string, string>
        {
            ["NUGET_PACKAGES"] = Path.Combine(packed.Root, "nuget-packages"),
            ["DOTNET_ROOT"] = ChildProcess.DotnetRoot,
        };

        ChildResult install = await ChildProcess.DotnetAsync(packed.Root, InstallTimeout, isolated,
            "tool", "install", "XenShare.Tool", "--tool-path", toolPath, "--add-source", packed.PackageFolder,
            "--configfile", config, "--version", version);
        output.WriteLine($"dotnet tool install: {install.Elapsed.TotalSeconds:F1} s");
        Assert.True(install.ExitCode == 0, install.Describe());

        string xenshare = Path.Combine(toolPath, OperatingSystem.IsWindows() ? "xenshare.exe" : "xenshare");
        Assert.True(File.Exists(xenshare), $"no {xenshare} after the install\n{install.Describe()}");

        // --version prints the informational version: the package version, and the commit after a '+'.
        ChildResult versionRun = await ChildProcess.RunAsync(xenshare, ["--version"], packed.Root, RunTimeout, isolated);
        Assert.True(versionRun.ExitCode == 0, versionRun.Describe());
        string printed = versionRun.StdOut.Trim();
        output.WriteLine("xenshare --version: " + printed);
        Assert.Equal(packed.Commit is null ? version : version + "+" + packed.Commit, printed);

        ChildResult info = await ChildProcess.RunAsync(xenshare, ["info"], packed.Root, RunTimeout, isolated);
        Assert.True(info.ExitCode == 0, info.Describe());
        Assert.StartsWith("backend: ", info.StdOut, StringComparison.Ordinal);
        Assert.Contains("emulated host defaults:", info.StdOut, StringComparison.Ordinal);
    }

    private string Version(string id)
    {
        XElement metadata = ReadNuspec(packed.PackagePath(id), out _);
        return metadata.Elements().Single(e => e.Name.LocalName == "version").Value.Trim();
    }

    /// <summary>The nuspec's &lt;metadata&gt; element, and the names of every entry of the package.</summary>
    private static XElement ReadNuspec(string nupkg, out IReadOnlyList<string> entries)
    {
        using ZipArchive zip = ZipFile.OpenRead(nupkg);
        entries = zip.Entries.Select(e => e.FullName).ToList();
        ZipArchiveEntry nuspec = Assert.Single(zip.Entries, e => !e.FullName.Contains('/', StringComparison.Ordinal) && e.FullName.EndsWith(".nuspec", StringComparison.Ordinal));
        using Stream stream = nuspec.Open();
        XDocument document = XDocument.Load(stream);
        return document.Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }
}

/// <summary>What makes the packages, checked in the project files themselves (no build).</summary>
[Trait("Category", "Packaging")]
public sealed class PackagingSettingsTests
{
    private static readonly string[] ProjectFolders = ["tests", "tools", "bench", "src"];

    [Fact]
    public void OnlyTheThreeSrcProjects_ArePackable()
    {
        string root = TestPaths.RepositoryRoot();
        var projects = ProjectFolders
            .Where(d => Directory.Exists(Path.Combine(root, d)))
            .SelectMany(d => Directory.GetFiles(Path.Combine(root, d), "*.csproj", SearchOption.AllDirectories))
            .Where(p => !p.Split(Path.DirectorySeparatorChar).Any(part => part is "bin" or "obj"))
            .ToList();
        Assert.NotEmpty(projects);
        foreach (string project in projects)
        {
            string relative = Path.GetRelativePath(root, project).Replace(Path.DirectorySeparatorChar, '/');
            string? isPackable = XDocument.Load(project).Descendants().FirstOrDefault(e => e.Name.LocalName == "IsPackable")?.Value.Trim();
            if (relative.StartsWith("src/", StringComparison.Ordinal))
                Assert.True(isPackable is null or "true", $"{relative}: IsPackable {isPackable}");
            else
                Assert.True(isPackable == "false", $"{relative} must set <IsPackable>false</IsPackable>");
        }
    }

    [Fact]
    public void License_IsMit()
    {
        string license = File.ReadAllText(Path.Combine(TestPaths.RepositoryRoot(), "LICENSE"));
        Assert.StartsWith("MIT License", license, StringComparison.Ordinal);
        Assert.Contains("Copyright (c) 2026 XenShare contributors", license, StringComparison.Ordinal);
    }
}
