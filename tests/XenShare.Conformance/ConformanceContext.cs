namespace XenShare.Conformance;

/// <summary>Where the local dma-buf for an import scenario comes from.</summary>
public enum LocalDmaBufSource
{
    /// <summary><c>/dev/dma_heap/system</c> (DMA_HEAP_IOCTL_ALLOC): a plain local buffer with mmap.</summary>
    DmaHeap,

    /// <summary>A gntdev export of this domain's own gntalloc pages (the realxen recipe: dom0 grants pages
    /// to itself, maps them back through gntdev and exports them). It has no mmap (EX11); its memory is
    /// reached through the gntalloc mapping.</summary>
    GntDevSelfExport,
}

/// <summary>
/// What a scenario runs against: the process under test, a process in the peer domain, and the ids.
/// On real Xen both processes are the same dom0 process and the peer is dom0 itself; on the emulator
/// the peer is either dom0 itself or, for a domU under test, dom0.
/// </summary>
public sealed class ConformanceContext
{
    public ConformanceContext(IGuestProcess process, IGuestProcess peerProcess, DomainId self, DomainId peer,
        LocalDmaBufSource dmaBufSource, string name, IEmulatorProbe? probe = null)
    {
        Process = process;
        PeerProcess = peerProcess;
        Self = self;
        Peer = peer;
        DmaBufSource = dmaBufSource;
        Name = name;
        Probe = probe;
    }

    /// <summary>The process under test (it maps, exports and imports).</summary>
    public IGuestProcess Process { get; }

    /// <summary>A process in the peer domain (it grants pages to <see cref="Self"/> and maps the grants
    /// of imports). The same object as <see cref="Process"/> when the peer is this domain on real Xen.</summary>
    public IGuestProcess PeerProcess { get; }

    /// <summary>The domain of <see cref="Process"/>.</summary>
    public DomainId Self { get; }

    /// <summary>The peer domain.</summary>
    public DomainId Peer { get; }

    /// <summary>True when the peer is this domain (dom0 granting to itself).</summary>
    public bool PeerIsSelf => Self == Peer;

    /// <summary>How import scenarios obtain a local dma-buf.</summary>
    public LocalDmaBufSource DmaBufSource { get; }

    /// <summary>A label for output ("emulator dom0->self", "real dom0->self").</summary>
    public string Name { get; }

    /// <summary>Emulator internals (grant entries, deferred reclaim); null on real Xen, where the
    /// emulator-only scenarios are skipped.</summary>
    public IEmulatorProbe? Probe { get; }

    /// <summary>Whether a thread of <see cref="Process"/> (managed id, kernel thread id) is blocked inside
    /// EXP_WAIT_RELEASED right now: EW04's barrier. Default: the Linux kernel's view
    /// (<see cref="LinuxThreads.IsBlockedInIoctl"/>); the emulator sets its kernel's own.</summary>
    public Func<int, int, bool> IsBlockedInWait { get; init; } = LinuxThreads.IsBlockedInIoctl;
}

/// <summary>What only the emulated host can show: hypervisor state a real dom0 process cannot read.</summary>
public interface IEmulatorProbe
{
    /// <summary>The v1 grant entry <paramref name="gref"/> of <paramref name="granter"/>.</summary>
    (ushort Flags, ushort DomId, uint Frame) GrantEntry(DomainId granter, uint gref);

    /// <summary>Entries of <paramref name="domain"/>'s kernel waiting for deferred reclaim (EI09, D06).</summary>
    int DeferredReclaims(DomainId domain);
}
