using System.Globalization;
using System.Text.RegularExpressions;

namespace XenShare.Cli.Demo;

/// <summary>
/// The demo's output folder (<c>--out</c>), which the demo never clears blindly: it keeps a marker file,
/// <see cref="MarkerName"/>, listing every file it wrote there, and before a run it deletes only those (named like its
/// own files, <c>frame_NNNN.png</c> and <c>contact_sheet.png</c>, and listed) and its own unfinished temporary files. A
/// folder that holds anything else is refused (the command exits with 2) unless <c>--force</c> is given; even then the
/// other files are kept (and only those with the demo's names are overwritten, which the command announces). Files are
/// written under a temporary name and renamed into place when complete (<see cref="Create"/>), so a stopped run never
/// leaves a half-written PNG under a frame's name.
/// </summary>
/// <remarks>Files are written by one thread at a time (the backend's ring thread, then the scene); the marker is
/// appended under <c>_gate</c>, a leaf.</remarks>
internal sealed partial class DemoOutputFolder
{
    /// <summary>The marker file's name.</summary>
    public const string MarkerName = ".xenshare-demo";

    /// <summary>The marker's first line; a file of that name without it is not the demo's marker.</summary>
    public const string MarkerHeader = "# xenshare demo output: xenshare demo wrote the files listed below and, before its next run into this folder, deletes only these.";

    /// <summary>The suffix of the demo's temporary files (<c>.frame_0001.png.PID.xenshare-tmp</c>).</summary>
    public const string TempSuffix = ".xenshare-tmp";

    private readonly Lock _gate = new();
    private readonly List<string> _written = [];

    private DemoOutputFolder(string path, IReadOnlyList<string> kept)
    {
        FolderPath = path;
        Kept = kept;
    }

    /// <summary>The folder.</summary>
    public string FolderPath { get; }

    /// <summary>The marker file's path.</summary>
    public string MarkerPath => Path.Combine(FolderPath, MarkerName);

    /// <summary>Entries the demo did not write, kept (there are any only with <c>--force</c>).</summary>
    public IReadOnlyList<string> Kept { get; }

    /// <summary>The files written so far in this run, in order (file names).</summary>
    public IReadOnlyList<string> Written
    {
        get
        {
            lock (_gate) return [.. _written];
        }
    }

    /// <summary>Looks at <paramref name="folder"/> without changing anything: which entries are the demo's own (listed
    /// in its marker and named like its files, or its temporary files) and which are not.</summary>
    /// <param name="folder">The <c>--out</c> folder.</param>
    public static DemoOutputInspection Inspect(string folder)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(folder);
        if (File.Exists(folder)) return new DemoOutputInspection([], [], $"--out '{folder}' is a file, not a folder");
        if (!Directory.Exists(folder)) return new DemoOutputInspection([], [], null);
        try
        {
            var listed = ReadMarker(Path.Combine(folder, MarkerName));
            var own = new List<string>();
            var foreign = new List<string>();
            foreach (string entry in Directory.EnumerateFileSystemEntries(folder))
            {
                string name = Path.GetFileName(entry);
                bool isFile = File.Exists(entry);
                if (listed is not null && isFile && name == MarkerName) continue;
                if (listed is not null && isFile && ((listed.Contains(name) && IsOwnName(name)) || TempName().IsMatch(name))) own.Add(name);
                else foreign.Add(name);
            }
            own.Sort(StringComparer.Ordinal);
            foreign.Sort(StringComparer.Ordinal);
            return new DemoOutputInspection(own, foreign, null);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return new DemoOutputInspection([], [], $"--out '{folder}' cannot be read: {e.Message}");
        }
    }

    /// <summary>Whether <paramref name="name"/> is named like a file the demo writes (<c>frame_NNNN.png</c>,
    /// <c>contact_sheet.png</c>).</summary>
    public static bool IsOwnName(string name) => OwnName().IsMatch(name);

    /// <summary>The message that refuses a folder holding <paramref name="foreign"/>.</summary>
    public static string RefusalMessage(string folder, IReadOnlyList<string> foreign)
    {
        ArgumentNullException.ThrowIfNull(foreign);
        string names = string.Join(", ", foreign.Take(3)) + (foreign.Count > 3 ? ", ..." : "");
        return string.Create(CultureInfo.InvariantCulture,
            $"--out '{folder}' holds {foreign.Count} file(s) the demo did not write ({names}). The demo deletes only its own earlier output (listed in {MarkerName}), so it will not clear this folder. Choose another folder with --out, empty this one, or pass --force to write into it anyway: your files are kept, and any named like the demo's (frame_NNNN.png, contact_sheet.png) are overwritten.");
    }

    /// <summary>Prepares <paramref name="options"/>' output folder for a run: creates it, refuses it (throws
    /// <see cref="InvalidOperationException"/> with <see cref="RefusalMessage"/>) when it holds files the demo did not
    /// write and <see cref="DemoOptions.Force"/> is off, deletes the demo's own earlier output, and starts a fresh
    /// marker.</summary>
    public static DemoOutputFolder Open(DemoOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string folder = options.OutputDirectory;
        var inspection = Inspect(folder);
        if (inspection.Problem is { } problem) throw new IOException(problem);
        if (inspection.Foreign.Count > 0 && !options.Force) throw new InvalidOperationException(RefusalMessage(folder, inspection.Foreign));
        Directory.CreateDirectory(folder);
        foreach (string name in inspection.Own) File.Delete(Path.Combine(folder, name));
        File.WriteAllText(Path.Combine(folder, MarkerName), MarkerHeader + "\n");
        return new DemoOutputFolder(folder, inspection.Foreign);
    }

    /// <summary>Starts writing <paramref name="fileName"/> (one of the demo's names) under a temporary name; the file
    /// gets its name and a line in the marker at <see cref="DemoOutputFile.Commit"/>.</summary>
    public DemoOutputFile Create(string fileName)
    {
        if (!IsOwnName(fileName)) throw new ArgumentException($"'{fileName}' is not one of the demo's file names", nameof(fileName));
        return new DemoOutputFile(this, fileName);
    }

    /// <summary>Records a file renamed into place: appended to the marker, then to <see cref="Written"/>.</summary>
    internal void Committed(string fileName)
    {
        lock (_gate)
        {
            File.AppendAllText(MarkerPath, fileName + "\n");
            _written.Add(fileName);
        }
    }

    /// <summary>The names a marker lists, or null when there is no marker (or the file of that name is not one).</summary>
    private static HashSet<string>? ReadMarker(string path)
    {
        if (!File.Exists(path)) return null;
        using var reader = new StreamReader(path);
        if (reader.ReadLine() != MarkerHeader) return null;
        var names = new HashSet<string>(StringComparer.Ordinal);
        while (reader.ReadLine() is { } line)
            if (line.Length > 0) names.Add(line);
        return names;
    }

    [GeneratedRegex(@"^(frame_[0-9]{4,}\.png|contact_sheet\.png)$", RegexOptions.CultureInvariant)]
    private static partial Regex OwnName();

    [GeneratedRegex(@"^\.(frame_[0-9]{4,}\.png|contact_sheet\.png)\.[0-9]+\.xenshare-tmp$", RegexOptions.CultureInvariant)]
    private static partial Regex TempName();
}

/// <summary>What <see cref="DemoOutputFolder.Inspect"/> found.</summary>
/// <param name="Own">The demo's own files from an earlier run (deleted before the next).</param>
/// <param name="Foreign">Entries the demo did not write (kept; a reason to refuse the folder without --force).</param>
/// <param name="Problem">Why the folder cannot be used at all, or null.</param>
internal sealed record DemoOutputInspection(IReadOnlyList<string> Own, IReadOnlyList<string> Foreign, string? Problem);
