using XenShare.Emulation.Kernel.Dma;

namespace XenShare.Emulation.Kernel.DmaBuf;

/// <summary>An importer device's attachment to a dma-buf (struct dma_buf_attachment).</summary>
public sealed class DmaBufAttachment
{
    internal DmaBufAttachment(DmaBufObject buffer, DmaDevice device)
    {
        Buffer = buffer;
        Device = device;
    }

    /// <summary>The buffer.</summary>
    public DmaBufObject Buffer { get; }

    /// <summary>The importing device.</summary>
    public DmaDevice Device { get; }

    /// <summary>The exporter's per-attachment data.</summary>
    public object? ExporterData { get; set; }

    /// <summary>True once detached.</summary>
    public bool Detached { get; internal set; }
}
