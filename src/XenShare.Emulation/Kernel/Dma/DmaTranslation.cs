namespace XenShare.Emulation.Kernel.Dma;

/// <summary>How a device's bus addresses reach memory. What a mode means depends on the domain the device
/// belongs to: a direct-mapped domain (Arm dom0, <c>Domain.IsDirectMapped</c>) or not (a domU, a driver
/// domain with a device passed through behind the SMMU). See docs/design.md, "DMA as Linux on Xen does it".
/// </summary>
public enum DmaTranslation
{
    /// <summary>A platform device (a display controller, a GPU) using the DMA API. In a direct-mapped domain
    /// Linux gives it the Xen swiotlb DMA ops (DM03): bus addresses are machine addresses, with or without an
    /// SMMU (Xen maps a direct-mapped domain's grant mappings 1:1 in the IOMMU), and a scatterlist entry whose
    /// machine frames are not contiguous is bounced through the swiotlb, or fails beyond 256 KiB (DM04). In a
    /// domain that is not direct-mapped (its stage-2 tables shared with the SMMU) bus addresses are the
    /// domain's guest-physical addresses: each entry is one segment, no copy (DM05).</summary>
    Direct,

    /// <summary>A device with an MMU of its own (a GPU's page tables, a video engine's IOMMU driven by its
    /// driver): the segments the DMA API gave it (as <see cref="Direct"/>: through the Xen swiotlb in a
    /// direct-mapped domain) are mapped at one contiguous IOVA range, so any buffer the DMA API could map is
    /// one segment for the device.</summary>
    Iommu,

    /// <summary>A software device on dma-direct without Xen's DMA ops (gntdev's misc device, which gntdev's
    /// import attaches): bus address = guest-physical address, never bounced; nothing reads through it but
    /// the kernel, which turns the addresses back into pages.</summary>
    Physical,
}
