namespace XenShare.Emulation.Hypervisor;

/// <summary>How to build a domain.</summary>
public sealed record DomainConfig
{
    /// <summary>Guest type (default Arm64).</summary>
    public DomainType Type { get; init; } = DomainType.Arm64;

    /// <summary>RAM in 4 KiB pages (default 16 MiB).</summary>
    public int RamPages { get; init; } = 4096;

    /// <summary>Unpopulated guest-physical pages for foreign mappings (default 64 Ki pages).</summary>
    public int UnpopulatedPages { get; init; } = 65536;

    /// <summary>max_grant_frames (default 64: 32 768 entries).</summary>
    public int MaxGrantFrames { get; init; } = 64;

    /// <summary>Maptrack frames of 256 handles (default 1024: 262 144 mappings).</summary>
    public int MaptrackFrames { get; init; } = 1024;

    /// <summary>A fixed domain id, or null for the next free one.</summary>
    public DomainId? Id { get; init; }

    /// <summary>Whether the domain's RAM is direct-mapped: one machine-contiguous run, as Xen gives an Arm
    /// dom0 its 1:1 banks (DM01). Null (default): dom0 on Arm64 is direct-mapped, every other domain is not.</summary>
    public bool? DirectMapped { get; init; }
}
