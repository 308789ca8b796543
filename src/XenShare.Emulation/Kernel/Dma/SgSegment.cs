namespace XenShare.Emulation.Kernel.Dma;

/// <summary>One mapped scatter-gather segment: a DMA address as the device sees it and a length.</summary>
/// <param name="DmaAddress">Bus address for the device.</param>
/// <param name="Length">Bytes.</param>
/// <param name="Offset">Offset of the data within the first page (sg-&gt;offset).</param>
public readonly record struct SgSegment(ulong DmaAddress, int Length, int Offset);
