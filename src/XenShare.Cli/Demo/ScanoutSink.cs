using XenShare.Api;
using XenShare.Displif;

namespace XenShare.Cli.Demo;

/// <summary>Called by <see cref="ScanoutSink"/> after it latched a framebuffer (on the backend's ring thread,
/// while the frontend waits for the answer).</summary>
/// <param name="display">The display; its front buffer is <paramref name="framebuffer"/>.</param>
/// <param name="framebuffer">The framebuffer just latched.</param>
/// <param name="frame">The number of the present: 0, 1, 2, ... in the order the backend presented.</param>
internal delegate void ScanoutPresentedHandler(DisplayDevice display, ScanoutBuffer framebuffer, long frame);

/// <summary>
/// The emulated host's display: an <see cref="IDisplaySink"/> that hands each framebuffer's dma-buf to a display
/// device through the seam (<see cref="DisplayDevice"/>, an emulated display controller in the backend's
/// kernel: dom0's, where it sees
/// machine addresses through the Xen swiotlb, or a driver domain's, behind the SMMU). FB_ATTACH imports the
/// dma-buf into the engine (attach + DMA map; the engine takes only one contiguous segment, so the backend
/// exports frontend buffers with GNTDEV_DMA_FLAG_WC, and backend-allocated buffers come from a contiguous heap;
/// a map that fails with ENOMEM is counted in <see cref="MappingErrors"/> and refused), SET_CONFIG and PG_FLIP
/// latch it as the front buffer, FB_DETACH and teardown release it.
/// What is done with a latched frame (scan-out into a PNG file, a thumbnail) is up to
/// <see cref="Presented"/>; without it the sink only latches (what P11 measures).
/// </summary>
/// <remarks>The backend calls a sink of one device one call at a time; the counters are read by other threads
/// after the run (or under <c>_gate</c>, a leaf).</remarks>
internal sealed class ScanoutSink : IDisplaySink, IDisposable
{
    private readonly Lock _gate = new();
    private readonly List<int> _segments = [];
    private long _presents;
    private int _attached;

    /// <summary>Opens the display device of the backend's domain.</summary>
    /// <param name="process">The backend's process: the dma-buf fds the backend hands over are in it.</param>
    /// <param name="devicePath">The display's device path.</param>
    public ScanoutSink(IGuestProcess process, string devicePath = Devices.DisplayDeviceIoctl.DefaultPath)
    {
        ArgumentNullException.ThrowIfNull(process);
        Display = DisplayDevice.Open(process, devicePath);
    }

    /// <summary>The display (its counters are the display path's).</summary>
    public DisplayDevice Display { get; }

    /// <summary>The display's counters now.</summary>
    public DisplayStats Stats() => Display.Stats();

    /// <summary>Called after each latch; null to latch only.</summary>
    public ScanoutPresentedHandler? Presented { get; init; }

    /// <summary>Frames presented (SET_CONFIG with a framebuffer, and PG_FLIP).</summary>
    public long Presents
    {
        get { lock (_gate) return _presents; }
    }

    /// <summary>Framebuffers imported into the engine now.</summary>
    public int AttachedCount
    {
        get { lock (_gate) return _attached; }
    }

    /// <summary>FB_ATTACHes the engine refused because the buffer could not be mapped for it (ENOMEM: a direct-mapped
    /// domain's swiotlb cannot bounce it, DM04).</summary>
    public int MappingErrors => (int)(LastStats ?? Display.Stats()).MappingErrors;

    /// <summary>DMA segments of each framebuffer as the engine mapped it, in attach order.</summary>
    public IReadOnlyList<int> SegmentCounts
    {
        get { lock (_gate) return [.. _segments]; }
    }

    /// <inheritdoc/>
    public ValueTask AttachAsync(DisplayFramebuffer framebuffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (DisplifPixelFormat.BitsPerPixel(framebuffer.FourCC) != 32 || framebuffer.Offset != 0)
            throw new XenShareException(Abi.Errno.EINVAL, $"the scan-out engine shows 32-bit pixels at offset 0, not {DisplifPixelFormat.Name(framebuffer.FourCC)} at {framebuffer.Offset}");
        // ENOMEM (the display could not map it) is counted by the display itself (STATS).
        var scanout = Display.Import(framebuffer.DmaBufFd, framebuffer.Width, framebuffer.Height, framebuffer.Pitch, framebuffer.FourCC);
        framebuffer.SinkState = scanout;
        lock (_gate)
        {
            _attached++;
            _segments.Add(scanout.Segments);
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask PresentAsync(int connector, DisplayFramebuffer framebuffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.SinkState is not ScanoutBuffer scanout) throw new InvalidOperationException("the framebuffer is not attached to this sink");
        // A bounced buffer (DM04) shows the display what was in it at the import: the display driver syncs it for
        // the device before each present, a CPU copy that the swiotlb counts. In place: nothing to do.
        if (scanout.BouncedBytes != 0) Display.Sync(scanout);
        Display.Flip(scanout);
        long frame;
        lock (_gate) frame = _presents++;
        Presented?.Invoke(Display, scanout, frame);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask DisableAsync(int connector, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc/>
    public ValueTask DetachAsync(DisplayFramebuffer framebuffer)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.SinkState is not ScanoutBuffer scanout) return ValueTask.CompletedTask;
        framebuffer.SinkState = null;
        scanout.Dispose();   // the display detaches and drops its dma-buf reference
        lock (_gate) _attached--;
        return ValueTask.CompletedTask;
    }

    /// <summary>The display's counters as they were when the sink was disposed (null before).</summary>
    public DisplayStats? LastStats { get; private set; }

    /// <summary>Reads the counters a last time (<see cref="LastStats"/>), then closes the display device, which
    /// releases every framebuffer still imported.</summary>
    public void Dispose()
    {
        if (LastStats is not null) return;
        LastStats = Display.Stats();
        Display.Dispose();
    }
}
