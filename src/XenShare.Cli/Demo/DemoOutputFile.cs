namespace XenShare.Cli.Demo;

/// <summary>
/// One file of the demo being written into its <see cref="DemoOutputFolder"/>: the bytes go to a temporary file
/// (<c>.NAME.PID.xenshare-tmp</c>) that <see cref="Commit"/> renames to its name (rename(2): the name appears only
/// with the whole file behind it) and records in the folder's marker. Disposed without a commit, the temporary file is
/// deleted.
/// </summary>
internal sealed class DemoOutputFile : IDisposable
{
    private readonly DemoOutputFolder _folder;
    private readonly string _tempPath;
    private readonly FileStream _stream;
    private bool _done;

    /// <summary>Creates the temporary file.</summary>
    internal DemoOutputFile(DemoOutputFolder folder, string fileName)
    {
        _folder = folder;
        FileName = fileName;
        FilePath = System.IO.Path.Combine(folder.FolderPath, fileName);
        _tempPath = System.IO.Path.Combine(folder.FolderPath, "." + fileName + "." + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) + DemoOutputFolder.TempSuffix);
        _stream = new FileStream(_tempPath, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
    }

    /// <summary>The file's name in the folder.</summary>
    public string FileName { get; }

    /// <summary>The file's final path.</summary>
    public string FilePath { get; }

    /// <summary>Where to write the file's bytes.</summary>
    public Stream Stream => _stream;

    /// <summary>Closes the temporary file, renames it to <see cref="FilePath"/> and records it in the marker.</summary>
    public void Commit()
    {
        ObjectDisposedException.ThrowIf(_done, this);
        _stream.Dispose();
        File.Move(_tempPath, FilePath, overwrite: true);
        _done = true;
        _folder.Committed(FileName);
    }

    /// <summary>Deletes the temporary file unless <see cref="Commit"/> ran.</summary>
    public void Dispose()
    {
        if (_done) return;
        _done = true;
        _stream.Dispose();
        try
        {
            File.Delete(_tempPath);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Left behind: the next run's inspection recognises the demo's temporary files and deletes them.
        }
    }
}
