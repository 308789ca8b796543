namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// How <see cref="XenHost"/> places a domain's RAM in machine memory (DM01). Either way, guest frames that
/// are contiguous are not guaranteed to be contiguous in machine memory, except for a direct-mapped
/// domain (<see cref="Domain.IsDirectMapped"/>), whose RAM is always one machine-contiguous run.
/// </summary>
public enum MachinePlacement
{
    /// <summary>As Xen's heap allocator behaves for a domU (the default): RAM in 2 MiB extents (512 frames
    /// in a 512-frame aligned machine run) while such free runs exist, otherwise in the largest smaller
    /// power-of-two aligned run that is free (256, 128, ... 1 frames). Extents are taken from the top of
    /// machine memory downward, so guest extent k+1 lies below extent k and two guest frames across an
    /// extent boundary are never machine-consecutive; domains created one after another get adjacent
    /// extents, and nothing is contiguous beyond one extent.</summary>
    Extents,

    /// <summary>Deliberately fragmented, for tests: every RAM page is a single frame taken along a
    /// deterministic scattered walk of machine memory, so no two consecutive guest frames are
    /// machine-consecutive (when memory is nearly full and the only free frames left are next to the
    /// previous page's frame, one of those is taken: the property then yields to the allocation).</summary>
    Fragmented,
}
