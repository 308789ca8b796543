namespace XenShare.Api;

/// <summary>Backing of an exported dma-buf (GNTDEV_DMA_FLAG_*).</summary>
[Flags]
public enum DmaBufBacking : uint
{
    /// <summary>Ballooned (scattered) pages.</summary>
    None = 0,
    /// <summary>One contiguous write-combining DMA allocation (GNTDEV_DMA_FLAG_WC).</summary>
    WriteCombine = 1,
    /// <summary>One contiguous coherent DMA allocation (GNTDEV_DMA_FLAG_COHERENT).</summary>
    Coherent = 2,
}
