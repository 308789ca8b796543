using XenShare.Devices;

namespace XenShare.Api;

/// <summary>The display's counters (<see cref="xenshare_display_stats"/>).</summary>
/// <param name="Raw">The counters as the device wrote them.</param>
public readonly record struct DisplayStats(xenshare_display_stats Raw)
{
    /// <summary>Flips latched.</summary>
    public long Flips => (long)Raw.flips;

    /// <summary>Frames scanned out.</summary>
    public long FramesScannedOut => (long)Raw.frames_scanned_out;

    /// <summary>Frames scanned out with no byte from a bounce buffer.</summary>
    public long ZeroCopyFrames => (long)Raw.zero_copy_frames;

    /// <summary>Bytes the CPU copied for the display (swiotlb bounces).</summary>
    public long CpuBytesCopied => (long)Raw.cpu_bytes_copied;

    /// <summary>Imports refused with ENOMEM.</summary>
    public long MappingErrors => (long)Raw.mapping_errors;

    /// <summary>Framebuffers imported now.</summary>
    public int Framebuffers => (int)Raw.framebuffers;

    /// <summary>Whether the display's domain is direct-mapped.</summary>
    public bool DirectMapped => Raw.direct_mapped != 0;

    /// <summary>Bytes the display's domain's swiotlb copied in all.</summary>
    public long SwiotlbBytesCopied => (long)Raw.swiotlb_bytes_copied;
}
