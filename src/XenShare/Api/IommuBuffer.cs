namespace XenShare.Api;

/// <summary>A dma-buf imported into an <see cref="IommuDevice"/>; disposing releases it.</summary>
public sealed class IommuBuffer : IDisposable
{
    private readonly IommuDevice _device;
    private int _released;

    internal IommuBuffer(IommuDevice device, uint handle, int segments, long size)
    {
        _device = device;
        Handle = handle;
        Segments = segments;
        Size = size;
    }

    /// <summary>The import's handle on the device's file.</summary>
    public uint Handle { get; }

    /// <summary>DMA segments as the device sees them (1: one IOVA range).</summary>
    public int Segments { get; }

    /// <summary>The buffer's size in bytes.</summary>
    public long Size { get; }

    /// <summary>The device reads <paramref name="into"/>.Length bytes at <paramref name="offset"/> through its IOVA.</summary>
    /// <exception cref="XenShareException">EINVAL beyond the buffer, ENOENT once released.</exception>
    public void Read(long offset, Span<byte> into)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        _device.Read(Handle, offset, into);
    }

    /// <summary>Releases the import (once).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) _device.Release(Handle);
    }
}
