namespace XenShare.Emulation.Kernel.Dma;

/// <summary>How a device's bus addresses reach memory.</summary>
public enum DmaTranslation
{
    /// <summary>Bus address = guest-physical address, translated by the domain's P2M (Xen on Arm with an
    /// SMMU sharing the stage-2 tables). Contiguous guest pages are contiguous for the device.</summary>
    Direct,
    /// <summary>The device sits behind its own IOMMU: any set of pages is mapped at one contiguous IOVA
    /// range, so every buffer becomes one segment.</summary>
    Iommu,
}
