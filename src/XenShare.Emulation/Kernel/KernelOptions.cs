namespace XenShare.Emulation.Kernel;

/// <summary>Tunables of an emulated guest kernel (module parameters and rlimits).</summary>
public sealed record KernelOptions
{
    /// <summary>RLIMIT_NOFILE of each process (default 1024).</summary>
    public int MaxFdsPerProcess { get; init; } = 1024;

    /// <summary>gntdev's <c>limit</c> module parameter: grants per call (default 65 536) (GD01, EX02).</summary>
    public int GntDevLimit { get; init; } = 65536;

    /// <summary>gntalloc's <c>limit</c> module parameter: total grefs (default 1024) (GA01).</summary>
    public int GntAllocLimit { get; init; } = 1024;

    /// <summary>Whether gntdev has CONFIG_XEN_GNTDEV_DMABUF (default true). When false the dma-buf ioctls
    /// answer ENOTTY, as Debian's stock kernels do.</summary>
    public bool GntDevDmaBuf { get; init; } = true;

    /// <summary>Models a kernel without CMA (as the real-Xen stage's Debian dom0): a WC/COHERENT export's
    /// DMA backing is one non-compound block from the page allocator whose tail pages have a reference
    /// count of 0, so a deferred grant end of an import of that export takes a reference on a page whose
    /// count is 0 - a defect of the real driver (docs/conformance.md) that the isolation monitor reports
    /// as <see cref="Hypervisor.IsolationHazardKind.ReferenceOnFreePage"/>. Default false: every DMA page
    /// has its own reference, as CMA gives them.</summary>
    public bool DmaWithoutCma { get; init; }

    /// <summary>Off by default and kept for one regression test: gntdev unmaps a map as soon as its last
    /// user goes, without waiting for extra page references (what this emulator did before it modelled page references). With it, an
    /// import of an export that a peer still maps lets the granter free and reuse pages the peer reads, and
    /// the isolation monitor reports the hazard.</summary>
    public bool SynchronousGntDevUnmap { get; init; }
}
