namespace XenShare.Api;

/// <summary>A framebuffer imported into a <see cref="DisplayDevice"/>; disposing releases it (FB_RELEASE).</summary>
public sealed class ScanoutBuffer : IDisposable
{
    private readonly DisplayDevice _device;
    private int _released;

    internal ScanoutBuffer(DisplayDevice device, uint id, int width, int height, int stride, int segments, long bouncedBytes)
    {
        _device = device;
        Id = id;
        Width = width;
        Height = height;
        Stride = stride;
        Segments = segments;
        BouncedBytes = bouncedBytes;
    }

    /// <summary>The framebuffer's id on the device's file.</summary>
    public uint Id { get; }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>Bytes between rows.</summary>
    public int Stride { get; }

    /// <summary>DMA segments of the display's mapping.</summary>
    public int Segments { get; }

    /// <summary>Bytes the display reaches through swiotlb bounce buffers (0: it reads the buffer in place).</summary>
    public long BouncedBytes { get; }

    /// <summary>Bytes of one scanned-out frame (width x height x 4).</summary>
    public int FrameBytes => checked(Width * Height * 4);

    /// <summary>Releases the framebuffer (once).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) _device.Release(Id);
    }
}
