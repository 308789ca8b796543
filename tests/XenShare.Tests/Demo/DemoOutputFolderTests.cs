using System.CommandLine;
using XenShare.Cli.Commands;
using XenShare.Cli.Demo;

namespace XenShare.Tests.Demo;

/// <summary><c>--out</c> never deletes a user's files silently (issue 13 item 5): a folder holding files the demo did
/// not write is refused with exit code 2 and left as it was; <c>--force</c> writes into it and keeps them; a rerun
/// deletes only the demo's own earlier files - named like them and listed in its marker, both.</summary>
public sealed class DemoOutputFolderTests : IDisposable
{
    private readonly DirectoryInfo _dir = Directory.CreateTempSubdirectory("xenshare-demo-out-");

    public void Dispose()
    {
        try
        {
            _dir.Delete(recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private static (int ExitCode, string Output, string Error) Invoke(params string[] args) => XenShare.Tests.Cli.CliRun.Invoke(args);

    private static (int, string, string) Demo(string folder, int frames, params string[] more) =>
        Invoke(["demo", "--width", "64", "--height", "64", "--frames", frames.ToString(System.Globalization.CultureInfo.InvariantCulture), "--no-compare", "--out", folder, .. more]);

    /// <summary>Name and content of every entry (directories as "dir").</summary>
    private static SortedDictionary<string, string> Snapshot(string folder) =>
        new(Directory.EnumerateFileSystemEntries(folder).ToDictionary(
            e => Path.GetFileName(e)!,
            e => Directory.Exists(e) ? "dir" : Convert.ToHexString(File.ReadAllBytes(e))), StringComparer.Ordinal);

    private string Folder(string name, params (string Name, string Content)[] files)
    {
        string folder = Path.Combine(_dir.FullName, name);
        Directory.CreateDirectory(folder);
        foreach (var (file, content) in files) File.WriteAllText(Path.Combine(folder, file), content);
        return folder;
    }

    [Fact]
    public void AFolderWithOtherFilesIsRefusedWithExitCode2_AndLeftAsItWas()
    {
        string folder = Folder("users", ("notes.txt", "mine"), ("frame_0000.png", "my own picture, not the demo's"));
        Directory.CreateDirectory(Path.Combine(folder, "photos"));
        var before = Snapshot(folder);

        var (exitCode, output, error) = Demo(folder, 2);

        Assert.Equal(DemoCommand.OutputRefusedExitCode, exitCode);
        Assert.Equal(2, exitCode);
        Assert.Contains("--out", error, StringComparison.Ordinal);
        Assert.Contains("3 file(s) the demo did not write (frame_0000.png, notes.txt, photos)", error, StringComparison.Ordinal);
        Assert.Contains("--force", error, StringComparison.Ordinal);
        Assert.Equal("", output);
        Assert.Equal(before, Snapshot(folder));   // nothing deleted, nothing written, not even the marker
    }

    [Fact]
    public void ForceWritesIntoIt_KeepsTheOtherFiles_AndSaysWhichItOverwrites()
    {
        string folder = Folder("forced", ("notes.txt", "mine"), ("frame_0000.png", "my own picture"));

        var (exitCode, _, error) = Demo(folder, 2, "--force");

        Assert.True(exitCode == 0, error);
        Assert.Contains("--force", error, StringComparison.Ordinal);
        Assert.Contains("overwriting 1 named like its own: frame_0000.png", error, StringComparison.Ordinal);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(folder, "notes.txt")));
        Assert.Equal(64, PngDecoder.DecodeFile(Path.Combine(folder, "frame_0000.png")).Width);
        Assert.Equal(
            [DemoOutputFolder.MarkerName, DemoOptions.ContactSheetFileName, "frame_0000.png", "frame_0001.png", "notes.txt"],
            Snapshot(folder).Keys);
    }

    [Fact]
    public void ARerunDeletesOnlyTheDemosOwnEarlierFiles()
    {
        string folder = Path.Combine(_dir.FullName, "rerun");
        var (exitCode, _, error) = Demo(folder, 5);
        Assert.True(exitCode == 0, error);
        // An unfinished temporary file of an earlier run (killed while writing) is the demo's too.
        File.WriteAllText(Path.Combine(folder, ".frame_0005.png.4242" + DemoOutputFolder.TempSuffix), "half a PNG");
        Assert.Equal(7, DemoOutputFolder.Inspect(folder).Own.Count);
        Assert.Empty(DemoOutputFolder.Inspect(folder).Foreign);

        (exitCode, _, error) = Demo(folder, 3);

        Assert.True(exitCode == 0, error);
        Assert.Equal("", error);
        Assert.Equal([DemoOutputFolder.MarkerName, DemoOptions.ContactSheetFileName, "frame_0000.png", "frame_0001.png", "frame_0002.png"], Snapshot(folder).Keys);
        Assert.Equal(
            [DemoOutputFolder.MarkerHeader, "frame_0000.png", "frame_0001.png", "frame_0002.png", DemoOptions.ContactSheetFileName],
            File.ReadAllLines(Path.Combine(folder, DemoOutputFolder.MarkerName)));
    }

    /// <summary>A file is the demo's only when both hold: it is named like the demo's files and the demo's marker lists
    /// it. A marker that lists a user's file, a demo-like name without a marker, a demo-like name the marker does not
    /// list, and a folder under a demo-like name are all someone else's.</summary>
    [Fact]
    public void OnlyFilesNamedLikeTheDemosAndListedInItsMarkerAreItsOwn()
    {
        string noMarker = Folder("no-marker", ("frame_0000.png", "x"), ("contact_sheet.png", "x"));
        Assert.Empty(DemoOutputFolder.Inspect(noMarker).Own);
        Assert.Equal(["contact_sheet.png", "frame_0000.png"], DemoOutputFolder.Inspect(noMarker).Foreign);

        string marked = Folder("marked",
            (DemoOutputFolder.MarkerName, DemoOutputFolder.MarkerHeader + "\nframe_0000.png\nnotes.txt\n"),
            ("frame_0000.png", "x"), ("frame_0001.png", "not listed"), ("notes.txt", "listed, but not a demo name"));
        Directory.CreateDirectory(Path.Combine(marked, "contact_sheet.png"));
        var inspection = DemoOutputFolder.Inspect(marked);
        Assert.Equal(["frame_0000.png"], inspection.Own);
        Assert.Equal(["contact_sheet.png", "frame_0001.png", "notes.txt"], inspection.Foreign);

        string fakeMarker = Folder("fake-marker", (DemoOutputFolder.MarkerName, "my notes\nframe_0000.png\n"), ("frame_0000.png", "x"));
        inspection = DemoOutputFolder.Inspect(fakeMarker);
        Assert.Empty(inspection.Own);
        Assert.Equal([DemoOutputFolder.MarkerName, "frame_0000.png"], inspection.Foreign);

        string file = Path.Combine(_dir.FullName, "a-file");
        File.WriteAllText(file, "x");
        Assert.Contains("is a file, not a folder", DemoOutputFolder.Inspect(file).Problem, StringComparison.Ordinal);
    }

    /// <summary>The scene itself refuses too (for callers that skip the command's check), before touching anything.</summary>
    [Fact]
    public void TheSceneRefusesAForeignFolderWithoutForce()
    {
        string folder = Folder("scene", ("notes.txt", "mine"));
        var options = new DemoOptions { Width = 64, Height = 64, Frames = 1, Compare = false, OutputDirectory = folder };
        var e = Assert.Throws<InvalidOperationException>(() => DemoScene.Run(options));
        Assert.Contains("notes.txt", e.Message, StringComparison.Ordinal);
        Assert.Equal(["notes.txt"], Snapshot(folder).Keys);
    }

    /// <summary>An empty folder, or one that does not exist yet, is fine; a committed file appears whole, and an
    /// abandoned one leaves nothing behind.</summary>
    [Fact]
    public void FilesAppearOnlyWhenComplete()
    {
        string folder = Path.Combine(_dir.FullName, "atomic");
        var output = DemoOutputFolder.Open(new DemoOptions { OutputDirectory = folder });
        using (var file = output.Create("frame_0000.png"))
        {
            file.Stream.Write([1, 2, 3]);
            Assert.False(File.Exists(file.FilePath));
            file.Commit();
        }
        using (var abandoned = output.Create("frame_0001.png"))
        {
            abandoned.Stream.Write([4]);
        }
        Assert.Throws<ArgumentException>(() => output.Create("notes.txt"));
        Assert.Equal([DemoOutputFolder.MarkerName, "frame_0000.png"], Snapshot(folder).Keys);
        Assert.Equal([1, 2, 3], File.ReadAllBytes(Path.Combine(folder, "frame_0000.png")));
        Assert.Equal(["frame_0000.png"], output.Written);
    }
}
