namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// A domain of the emulated host: its memory (P2M), grant table, maptrack table and event channels.
/// </summary>
public sealed class Domain
{
    internal Domain(DomainId id, DomainType type, int ramPages, int unpopulatedPages, GrantTable grants, int maptrackFrames, bool directMapped = false)
    {
        Id = id;
        IsDirectMapped = directMapped;
        Type = type;
        RamPages = ramPages;
        UnpopulatedPages = unpopulatedPages;
        P2M = new P2M(ramPages + unpopulatedPages);
        GrantTable = grants;
        MapTrack = new MapTrack(maptrackFrames);
        Events = new EventChannelTable();
    }

    /// <summary>Unique per domain ever created on the host (domain ids are reused; this is not): the
    /// owner a machine frame's data belongs to, for scrubbing across owners.</summary>
    internal int Token { get; init; }

    /// <summary>The domain id.</summary>
    public DomainId Id { get; }

    /// <summary>The guest type.</summary>
    public DomainType Type { get; }

    /// <summary>True for auto-translated guests (Arm64, x86 HVM): grant mappings go into the P2M.</summary>
    public bool IsAutoTranslated => Type != DomainType.X86Pv;

    /// <summary>True for x86 guests.</summary>
    public bool IsX86 => Type != DomainType.Arm64;

    /// <summary>True when the domain's RAM is one machine-contiguous run (DM01: an Arm dom0's 1:1 bank, or a
    /// domain created with <see cref="DomainConfig.DirectMapped"/>): GFN g is MFN <see cref="DirectMapBase"/>
    /// + g. Real Xen maps GFN g to MFN g; the emulator keeps an offset (frame 0 and the grant-table frames
    /// sit below the bank), a deliberate deviation, since only the contiguity matters to DMA.</summary>
    public bool IsDirectMapped { get; }

    /// <summary>The machine frame of GFN 0 of a direct-mapped domain's bank (default otherwise).</summary>
    internal MachineFrame DirectMapBase { get; set; }

    /// <summary>RAM pages: GFNs [0, RamPages).</summary>
    public int RamPages { get; }

    /// <summary>Unpopulated GFNs [RamPages, RamPages + UnpopulatedPages) for foreign mappings.</summary>
    public int UnpopulatedPages { get; }

    /// <summary>The physical-to-machine table.</summary>
    public P2M P2M { get; }

    /// <summary>The domain's own grant table.</summary>
    public GrantTable GrantTable { get; }

    internal MapTrack MapTrack { get; }

    /// <summary>Live maptrack handles (mappings this domain holds of others' grants).</summary>
    public int MapTrackInUse => MapTrack.InUse;

    /// <summary>Maximum maptrack handles.</summary>
    public int MapTrackMax => MapTrack.MaxHandles;

    /// <summary>The event-channel ports.</summary>
    public EventChannelTable Events { get; }

    /// <summary>True once the domain is being destroyed (a zombie while others still map its pages).</summary>
    public bool IsDying { get; internal set; }

    /// <summary>Set (under the host's domain lock) once destruction has unmapped, closed and released all it
    /// does; from then on the domain is reaped as soon as no other domain maps its pages.</summary>
    internal bool TornDown { get; set; }

    /// <summary>The kernel's upcall interface, if a kernel runs in this domain.</summary>
    public IDomainSink? Sink { get; set; }

    /// <summary>"dom1 (Arm64)".</summary>
    public override string ToString() => $"dom{Id} ({Type})";
}
