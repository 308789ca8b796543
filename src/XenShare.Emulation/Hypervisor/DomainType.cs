namespace XenShare.Emulation.Hypervisor;

/// <summary>The kind of guest a domain is; gntdev behaves differently in each.</summary>
public enum DomainType
{
    /// <summary>Arm64 guest: auto-translated physmap, the platform the dma-buf series was written for.</summary>
    Arm64,
    /// <summary>x86 HVM/PVH guest: auto-translated; Xen refuses GNTMAP_device_map from it.</summary>
    X86Hvm,
    /// <summary>x86 PV guest: not auto-translated, so gntdev runs with use_ptemod (EX01).</summary>
    X86Pv,
}
