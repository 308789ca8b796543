using System.ComponentModel;
using System.Diagnostics;

namespace XenShare.Tests.Packaging;

/// <summary>
/// Packs XenShare, XenShare.Emulation and XenShare.Tool once for <see cref="PackageTests"/>, in a temporary
/// copy of the repository, never in the clone the tests run from: the running <c>dotnet test</c> owns that
/// clone's bin/ and obj/ folders.
/// <para>The copy is <c>git clone --local --no-hardlinks</c> of the repository (MinVer reads the version from
/// its history and tags, SourceLink the commit), with the working tree's files under src/ and at the root
/// copied over it, so that what is packed is what is on disk, committed or not. Without git (no .git, or no
/// git program) those files are copied alone: the packages are then versioned 0.1.0-alpha.0 and carry no
/// commit (MinVer and SourceLink warn).</para>
/// </summary>
public sealed class PackedPackages : IAsyncLifetime
{
    /// <summary>The package ids, in the order of their projects' dependencies.</summary>
    public static readonly IReadOnlyList<string> Ids = ["XenShare", "XenShare.Emulation", "XenShare.Tool"];

    private static readonly string[] Projects =
    [
        "src/XenShare/XenShare.csproj",
        "src/XenShare.Emulation/XenShare.Emulation.csproj",
        "src/XenShare.Cli/XenShare.Cli.csproj",
    ];

    private static readonly TimeSpan GitTimeout = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan PackTimeout = TimeSpan.FromMinutes(10);

    /// <summary>The temporary folder that holds everything below; deleted at the end.</summary>
    public string Root { get; } = Directory.CreateTempSubdirectory("xenshare-pack-").FullName;

    /// <summary>The clone the tests run from.</summary>
    public string Repository { get; } = TestPaths.RepositoryRoot();

    /// <summary>The copy that was packed.</summary>
    public string Source => Path.Combine(Root, "source");

    /// <summary>The folder with the .nupkg and .snupkg files.</summary>
    public string PackageFolder => Path.Combine(Root, "packages");

    /// <summary>The commit checked out in the copy (40 hex digits), or null when it was packed without git.</summary>
    public string? Commit { get; private set; }

    /// <summary>The output of <c>dotnet pack</c>.</summary>
    public ChildResult? Pack { get; private set; }

    /// <summary>How long copying and packing took.</summary>
    public TimeSpan Elapsed { get; private set; }

    public async Task InitializeAsync()
    {
        var clock = Stopwatch.StartNew();
        if (!await TryCloneAsync()) CopyWithoutGit();

        // The three packable projects alone: packing the solution would also build the tests.
        File.WriteAllText(Path.Combine(Source, "XenShare.Packages.slnx"),
            "<Solution>\n" + string.Concat(Projects.Select(p => $"  <Project Path=\"{p}\" />\n")) + "</Solution>\n");
        Pack = await ChildProcess.DotnetAsync(Source, PackTimeout, null,
            "pack", "XenShare.Packages.slnx", "-c", "Release", "-p:PackageOutputPath=" + PackageFolder + Path.DirectorySeparatorChar,
            "-nodeReuse:false", "-tl:off");
        Elapsed = clock.Elapsed;
    }

    public Task DisposeAsync()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // a file still open (a failed install, say): the temporary folder stays
        }
        catch (UnauthorizedAccessException)
        {
        }

        return Task.CompletedTask;
    }

    /// <summary>The .nupkg (or, with <paramref name="symbols"/>, .snupkg) of package <paramref name="id"/>.</summary>
    public string PackagePath(string id, bool symbols = false)
    {
        string extension = symbols ? ".snupkg" : ".nupkg";
        string[] found = Directory.Exists(PackageFolder)
            ? Directory.GetFiles(PackageFolder, id + ".*" + extension)
                .Where(f => IsVersionSuffix(Path.GetFileName(f)[(id.Length + 1)..^extension.Length]))
                .ToArray()
            : [];
        Assert.True(found.Length == 1, $"expected one {id} {extension} in {PackageFolder}, found {found.Length}\n{Pack?.Describe()}");
        return found[0];
    }

    // "XenShare.*.nupkg" also matches XenShare.Tool.0.1.0.nupkg: a version starts with a digit.
    private static bool IsVersionSuffix(string suffix) => suffix.Length > 0 && char.IsAsciiDigit(suffix[0]);

    private async Task<bool> TryCloneAsync()
    {
        if (!Directory.Exists(Path.Combine(Repository, ".git")) && !File.Exists(Path.Combine(Repository, ".git"))) return false;
        ChildResult clone;
        try
        {
            clone = await ChildProcess.RunAsync("git", ["clone", "--quiet", "--local", "--no-hardlinks", Repository, Source], Root, GitTimeout);
        }
        catch (Win32Exception)
        {
            return false;   // no git program
        }

        Assert.True(clone.ExitCode == 0, clone.Describe());
        var head = await ChildProcess.RunAsync("git", ["rev-parse", "HEAD"], Source, GitTimeout);
        Assert.True(head.ExitCode == 0, head.Describe());
        Commit = head.StdOut.Trim();

        // The working tree over the clone: tracked and untracked (not ignored) files under src/ and at the
        // root; a tracked file deleted on disk is deleted in the copy too.
        var files = await ChildProcess.RunAsync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], Repository, GitTimeout);
        Assert.True(files.ExitCode == 0, files.Describe());
        foreach (string file in files.StdOut.Split('\0', StringSplitOptions.RemoveEmptyEntries).Distinct(StringComparer.Ordinal))
        {
            if (!file.StartsWith("src/", StringComparison.Ordinal) && file.Contains('/', StringComparison.Ordinal)) continue;
            string from = Path.Combine(Repository, file), to = Path.Combine(Source, file);
            if (File.Exists(from))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(to)!);
                File.Copy(from, to, overwrite: true);
            }
            else
            {
                File.Delete(to);
            }
        }

        return true;
    }

    private void CopyWithoutGit()
    {
        Directory.CreateDirectory(Source);
        foreach (string file in Directory.GetFiles(Repository)) File.Copy(file, Path.Combine(Source, Path.GetFileName(file)));
        CopyTree(Path.Combine(Repository, "src"), Path.Combine(Source, "src"));
    }

    private static void CopyTree(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        foreach (string dir in Directory.GetDirectories(from))
        {
            string name = Path.GetFileName(dir);
            if (name is "bin" or "obj") continue;
            CopyTree(dir, Path.Combine(to, name));
        }
    }
}
