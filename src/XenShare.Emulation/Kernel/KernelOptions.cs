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
}
