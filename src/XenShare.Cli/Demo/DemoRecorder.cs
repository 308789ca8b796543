using System.Buffers;
using System.Diagnostics;
using XenShare.Api;

namespace XenShare.Cli.Demo;

/// <summary>
/// What the demo's display does with each frame it shows: scan it out (zero-copy path: through the scan-out
/// engine's DMA address) or take the copied pixels (copy path), write the PNG file of the frames
/// <see cref="DemoOptions.WritesPng"/> selects, and fill the contact sheet. It also times itself per frame,
/// so that the display path's time can be told apart from the time spent on files.
/// </summary>
/// <remarks>Called on the backend's ring thread, one frame at a time; read by others after the run (or
/// under <c>_gate</c>, a leaf).</remarks>
internal sealed class DemoRecorder
{
    private readonly DemoOptions _options;
    private readonly HashSet<int> _sheetFrames = [];
    private readonly List<string> _pngFiles = [];
    private readonly long[] _outputTicks;
    private readonly Lock _gate = new();

    /// <summary>Prepares the contact sheet for the frames it samples.</summary>
    public DemoRecorder(DemoOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _options = options;
        _outputTicks = new long[options.Frames];
        int tiles = Math.Min(options.Frames, options.ContactSheetFrames);
        if (tiles > 0)
        {
            for (int i = 0; i < tiles; i++) _sheetFrames.Add(tiles == 1 ? 0 : (int)((long)i * (options.Frames - 1) / (tiles - 1)));
            Sheet = new ContactSheet(options.Width, options.Height, _sheetFrames.Count, columns: 4, thumbnailWidth: Math.Min(320, options.Width));
        }
    }

    /// <summary>The contact sheet being filled (null when no frames are sampled).</summary>
    public ContactSheet? Sheet { get; }

    /// <summary>PNG files written, in frame order.</summary>
    public IReadOnlyList<string> PngFiles
    {
        get { lock (_gate) return [.. _pngFiles]; }
    }

    /// <summary>Stopwatch ticks the recorder spent on a frame (scan-out, PNG file, thumbnail); 0 for a frame
    /// not shown.</summary>
    public long OutputTicks(int frame)
    {
        lock (_gate) return (uint)frame < (uint)_outputTicks.Length ? _outputTicks[frame] : 0;
    }

    /// <summary>Scan-out path: the display scans every latched frame out (as a display would) and this reads it
    /// back through the device (read(2)) into a PNG file when selected and the contact sheet's samples. The
    /// read-back is the capture, not the display path: it is not counted as the display's copies.</summary>
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

    /// <summary>Copy path: writes the copied pixels into a PNG file when selected, and samples them for the
    /// contact sheet.</summary>
    public void OnCopied(ReadOnlySpan<byte> pixels, int stride, long frame) =>
        Record(checked((int)frame), Stopwatch.GetTimestamp(), pixels, stride);

    /// <summary>Writes the frame's PNG file when selected and samples it for the contact sheet; records the time
    /// since <paramref name="start"/>.</summary>
    private void Record(int f, long start, ReadOnlySpan<byte> pixels, int stride)
    {
        var o = _options;
        if (f < o.Frames && o.WritesPng(f))
        {
            string path = o.FramePath(f);
            PngEncoder.Write(path, pixels, o.Width, o.Height, stride);
            Written(path);
        }
        if (Sheet is not null && _sheetFrames.Contains(f)) Sheet.AddFrame(pixels, stride, f);
        Timed(f, start);
    }

    private void Written(string path)
    {
        lock (_gate) _pngFiles.Add(path);
    }

    private void Timed(int frame, long start)
    {
        long ticks = Stopwatch.GetTimestamp() - start;
        lock (_gate)
            if ((uint)frame < (uint)_outputTicks.Length) _outputTicks[frame] = ticks;
    }
}
