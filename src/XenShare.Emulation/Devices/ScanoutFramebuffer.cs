using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Emulation.Devices;

/// <summary>
/// A dma-buf attached to a <see cref="ScanoutEngine"/> and mapped for it (DMA_TO_DEVICE) as one contiguous
/// segment: what a display driver keeps per framebuffer (drm_framebuffer + its GEM import). The attachment
/// and the mapping live until <see cref="Dispose"/>, so flipping to it costs no mapping work.
/// </summary>
public sealed class ScanoutFramebuffer : IDisposable
{
    private readonly ScanoutEngine _engine;
    private DmaBufObject? _buffer;
    private DmaBufAttachment? _attachment;
    private SgTable? _table;

    internal ScanoutFramebuffer(ScanoutEngine engine, int id, DmaBufObject buffer, DmaBufAttachment attachment, SgTable table, int width, int height, int stride)
    {
        _engine = engine;
        Id = id;
        _buffer = buffer;
        _attachment = attachment;
        _table = table;
        Width = width;
        Height = height;
        Stride = stride;
        DmaAddress = table.Segments[0].DmaAddress;
        SegmentCount = table.Segments.Count;
        BouncedBytes = table.BouncedBytes;
    }

    /// <summary>Bytes of the buffer the engine reads from swiotlb bounce buffers (DM04): 0 when it scans the
    /// buffer's own memory out in place.</summary>
    public long BouncedBytes { get; }

    /// <summary>Copies what the CPU wrote into the buffer since it was attached to the engine's bounce buffer
    /// (dma_sync_sgtable_for_device); nothing when the buffer is read in place. Returns the bytes copied.</summary>
    public long SyncForDevice()
    {
        var table = Volatile.Read(ref _table);
        return table is null ? 0 : table.Device.SyncForDevice(table);
    }

    /// <summary>The engine's number for this framebuffer.</summary>
    public int Id { get; }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>Bytes between row starts.</summary>
    public int Stride { get; }

    /// <summary>Bytes the engine reads per frame (<c>Stride * (Height - 1) + Width * 4</c>).</summary>
    public long FrameBytes => ((long)Stride * (Height - 1)) + (Width * 4L);

    /// <summary>The bus address of the single segment the engine reads from.</summary>
    public ulong DmaAddress { get; }

    /// <summary>Segments of the sg table as mapped for the engine (always 1: the engine refuses others).</summary>
    public int SegmentCount { get; }

    /// <summary>Size of the dma-buf in bytes.</summary>
    public long BufferSize => _buffer?.Size ?? 0;

    /// <summary>True once released.</summary>
    public bool IsDisposed => Volatile.Read(ref _buffer) is null;

    internal ScanoutEngine Engine => _engine;

    /// <summary>Unmaps, detaches and drops the dma-buf reference (the engine stops scanning it out).</summary>
    public void Dispose() => _engine.Release(this);

    /// <summary>Tears the import down (called by the engine under its lock bookkeeping, at most once).</summary>
    internal bool TearDown()
    {
        var buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is null) return false;
        buffer.UnmapAttachment(_attachment!, _table!, DmaDirection.ToDevice);
        buffer.Detach(_attachment!);
        buffer.Put();
        _attachment = null;
        _table = null;
        return true;
    }
}
