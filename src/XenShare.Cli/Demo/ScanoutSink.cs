using XenShare.Api;
using XenShare.Displif;
using XenShare.Emulation.Devices;
using XenShare.Emulation.Kernel;

namespace XenShare.Cli.Demo;

/// <summary>Called by <see cref="ScanoutSink"/> after it latched a framebuffer (on the backend's ring thread,
/// while the frontend waits for the answer).</summary>
/// <param name="engine">The scan-out engine; its front buffer is <paramref name="framebuffer"/>.</param>
/// <param name="framebuffer">The framebuffer just latched.</param>
/// <param name="frame">The number of the present: 0, 1, 2, ... in the order the backend presented.</param>
internal delegate void ScanoutPresentedHandler(ScanoutEngine engine, ScanoutFramebuffer framebuffer, long frame);

/// <summary>
/// The emulated host's display: an <see cref="IDisplaySink"/> that hands each framebuffer's dma-buf to a
/// <see cref="ScanoutEngine"/> (an emulated display controller in the backend's kernel: dom0's, where it sees
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
    private readonly GuestProcess _process;
    private readonly Lock _gate = new();
    private readonly List<int> _segments = [];
    private long _presents;
    private int _attached;
    private int _mappingErrors;

    /// <summary>Creates the engine as a device of the backend's kernel.</summary>
    /// <param name="process">The backend's process: the dma-buf fds the backend hands over are in it.</param>
    /// <param name="name">The engine's device name.</param>
    public ScanoutSink(GuestProcess process, string name = "scanout0")
    {
        ArgumentNullException.ThrowIfNull(process);
        _process = process;
        Engine = new ScanoutEngine(process.Kernel, name);
    }

    /// <summary>The scan-out engine (its zero-copy counters are the display path's).</summary>
    public ScanoutEngine Engine { get; }

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
    public int MappingErrors
    {
        get { lock (_gate) return _mappingErrors; }
    }

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
        int rc = Engine.TryAttach(_process, framebuffer.DmaBufFd, framebuffer.Width, framebuffer.Height, framebuffer.Pitch, out var attached, out string? reason);
        if (rc < 0)
        {
            if (rc == -Abi.Errno.ENOMEM)
                lock (_gate) _mappingErrors++;
            throw new XenShareException(-rc, "scan-out attach: " + reason);
        }
        var scanout = attached!;
        framebuffer.SinkState = scanout;
        lock (_gate)
        {
            _attached++;
            _segments.Add(scanout.SegmentCount);
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask PresentAsync(int connector, DisplayFramebuffer framebuffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.SinkState is not ScanoutFramebuffer scanout) throw new InvalidOperationException("the framebuffer is not attached to this sink");
        // A bounced buffer (DM04) shows the engine what was in it at the attach: the display driver syncs it for
        // the device before each present, a CPU copy that the swiotlb counts. In place: nothing to do.
        if (scanout.BouncedBytes != 0) scanout.SyncForDevice();
        Engine.Flip(scanout);
        long frame;
        lock (_gate) frame = _presents++;
        Presented?.Invoke(Engine, scanout, frame);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask DisableAsync(int connector, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc/>
    public ValueTask DetachAsync(DisplayFramebuffer framebuffer)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.SinkState is not ScanoutFramebuffer scanout) return ValueTask.CompletedTask;
        framebuffer.SinkState = null;
        scanout.Dispose();   // the engine detaches and drops its dma-buf reference
        lock (_gate) _attached--;
        return ValueTask.CompletedTask;
    }

    /// <summary>Releases every framebuffer still imported (detach them first) and the engine.</summary>
    public void Dispose() => Engine.Dispose();
}
