using XenShare.Emulation.Kernel.Dma;

namespace XenShare.Emulation.Kernel.DmaBuf;

/// <summary>
/// The exporter's operations (struct dma_buf_ops). Map, Unmap and Release are mandatory: export fails
/// with EINVAL without them (DB05). Attach may refuse a device with -errno. The CPU-access hooks and mmap
/// are optional. Every int result is 0 or -errno.
/// </summary>
public sealed class DmaBufOps
{
    /// <summary>attach: 0 or -errno.</summary>
    public Func<DmaBufAttachment, int>? Attach { get; init; }

    /// <summary>detach.</summary>
    public Action<DmaBufAttachment>? Detach { get; init; }

    /// <summary>map_dma_buf: the mapped table, or null with the errno in the out parameter.</summary>
    public MapFunc? Map { get; init; }

    /// <summary>unmap_dma_buf.</summary>
    public Action<DmaBufAttachment, SgTable, DmaDirection>? Unmap { get; init; }

    /// <summary>release: the last reference to the buffer is gone.</summary>
    public Action<DmaBufObject>? Release { get; init; }

    /// <summary>begin_cpu_access (optional).</summary>
    public Func<DmaBufObject, DmaDirection, int>? BeginCpuAccess { get; init; }

    /// <summary>end_cpu_access (optional).</summary>
    public Func<DmaBufObject, DmaDirection, int>? EndCpuAccess { get; init; }

    /// <summary>mmap (optional): fills the mapping's pages starting at a page offset; 0 or -errno.</summary>
    public Func<DmaBufObject, long, GuestFrame[], int>? MmapPages { get; init; }

    /// <summary>The map operation's shape.</summary>
    public delegate SgTable? MapFunc(DmaBufAttachment attachment, DmaDirection direction, out int errno);
}
