using System.Buffers;
using System.Diagnostics;
using XenShare.Api;

namespace XenShare.Cli.Demo;

/// <summary>
/// What the demo's display does with each frame it shows: scan it out (zero-copy path: through the scan-out engine's
/// DMA address) or take the copied pixels (copy path), encode the PNG of the frames <see cref="DemoOptions.WritesPng"/>
/// selects - into a file of the output folder (written under a temporary name, renamed when complete), or, in the
/// comparison pass (no folder), into a hash only - remember each PNG's hash, and fill the contact sheet. It also times
/// itself per frame, so that the display path's time can be told apart from the time spent on PNGs and thumbnails.
/// </summary>
/// <remarks>Called on the backend's ring thread, one frame at a time; read by others after the run (or under
/// <c>_gate</c>, a leaf).</remarks>
internal sealed class DemoRecorder
{
    private readonly DemoOptions _options;
    private readonly DemoOutputFolder? _folder;
    private readonly HashSet<int> _sheetFrames = [];
    private readonly List<string> _pngFiles = [];
    private readonly long[] _outputTicks;
    private readonly ulong?[] _pngHashes;
    private readonly Lock _gate = new();
    private int _recorded;

    /// <summary>Prepares a recorder that writes PNG files into <paramref name="folder"/> and fills a contact sheet, or,
    /// with no folder, only hashes the PNGs it encodes (the comparison pass).</summary>
    public DemoRecorder(DemoOptions options, DemoOutputFolder? folder)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _folder = folder;
        _outputTicks = new long[options.Frames];
        _pngHashes = new ulong?[options.Frames];
        int tiles = folder is null ? 0 : Math.Min(options.Frames, options.ContactSheetFrames);
        if (tiles > 0)
        {
            for (int i = 0; i < tiles; i++) _sheetFrames.Add(tiles == 1 ? 0 : (int)((long)i * (options.Frames - 1) / (tiles - 1)));
            Sheet = new ContactSheet(options.Width, options.Height, _sheetFrames.Count, columns: 4, thumbnailWidth: Math.Min(320, options.Width));
        }
    }

    /// <summary>The contact sheet being filled (null without an output folder, or when no frames are sampled).</summary>
    public ContactSheet? Sheet { get; }

    /// <summary>PNG files written, in frame order (paths).</summary>
    public IReadOnlyList<string> PngFiles
    {
        get
        {
            lock (_gate) return [.. _pngFiles];
        }
    }

    /// <summary>PNGs encoded (into files, or into hashes only).</summary>
    public int PngsEncoded
    {
        get
        {
            lock (_gate) return _pngHashes.Count(h => h is not null);
        }
    }

    /// <summary>Frames the display handed to the recorder (each one it showed).</summary>
    public int FramesRecorded => Volatile.Read(ref _recorded);

    /// <summary>The hash (XXH3) of frame <paramref name="frame"/>'s PNG file as encoded, or null when it got none.</summary>
    public ulong? PngHash(int frame)
    {
        lock (_gate) return (uint)frame < (uint)_pngHashes.Length ? _pngHashes[frame] : null;
    }

    /// <summary>Stopwatch ticks the recorder spent on a frame (scan-out read-back, PNG, thumbnail); 0 for a frame not
    /// shown.</summary>
    public long OutputTicks(int frame)
    {
        lock (_gate) return (uint)frame < (uint)_outputTicks.Length ? _outputTicks[frame] : 0;
    }

    /// <summary>Scan-out path: the display scans every latched frame out (as a display would) and this reads it back
    /// through the device (read(2)) for the PNG and the contact sheet's samples. The read-back is the capture, not the
    /// display path: it is not counted as the display's copies.</summary>
    public void OnScanout(DisplayDevice display, ScanoutBuffer framebuffer, long frame)
    {
        ArgumentNullException.ThrowIfNull(display);
        ArgumentNullException.ThrowIfNull(framebuffer);
        long start = Stopwatch.GetTimestamp();
        int bytes = framebuffer.FrameBytes;
        byte[] pixels = ArrayPool<byte>.Shared.Rent(bytes);
        try
        {
            display.ReadFrame(pixels.AsSpan(0, bytes));
            Record(checked((int)frame), start, pixels.AsSpan(0, bytes), framebuffer.Width * 4);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(pixels);
        }
    }

    /// <summary>Copy path: encodes the copied pixels when selected and samples them for the contact sheet.</summary>
    public void OnCopied(ReadOnlySpan<byte> pixels, int stride, long frame) =>
        Record(checked((int)frame), Stopwatch.GetTimestamp(), pixels, stride);

    /// <summary>Encodes the frame's PNG when selected (into its file, or into a hash only), samples it for the contact
    /// sheet; records the time since <paramref name="start"/>.</summary>
    private void Record(int f, long start, ReadOnlySpan<byte> pixels, int stride)
    {
        var o = _options;
        if (f < o.Frames && o.WritesPng(f))
        {
            ulong hash;
            string? path = null;
            if (_folder is null)
            {
                var sink = new HashingStream();
                PngEncoder.Write(sink, pixels, o.Width, o.Height, stride);
                hash = sink.Hash;
            }
            else
            {
                using var file = _folder.Create(DemoOptions.FrameFileName(f));
                using (var hashing = new HashingStream(file.Stream))
                {
                    PngEncoder.Write(hashing, pixels, o.Width, o.Height, stride);
                    hash = hashing.Hash;
                }
                file.Commit();
                path = file.FilePath;
            }
            lock (_gate)
            {
                _pngHashes[f] = hash;
                if (path is not null) _pngFiles.Add(path);
            }
        }
        if (Sheet is not null && _sheetFrames.Contains(f)) Sheet.AddFrame(pixels, stride, f);
        long ticks = Stopwatch.GetTimestamp() - start;
        lock (_gate)
            if ((uint)f < (uint)_outputTicks.Length) _outputTicks[f] = ticks;
        Interlocked.Increment(ref _recorded);
    }
}
