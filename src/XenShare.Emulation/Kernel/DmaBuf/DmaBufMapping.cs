using XenShare.Emulation.Kernel.Dma;

namespace XenShare.Emulation.Kernel.DmaBuf;

/// <summary>The step of an import that failed (for messages).</summary>
public enum DmaBufImportStep
{
    /// <summary>Nothing failed.</summary>
    None,
    /// <summary>dma_buf_get: the fd is not open (EBADF) or not a dma-buf (EINVAL).</summary>
    Get,
    /// <summary>dma_buf_attach: the exporter refused the device.</summary>
    Attach,
    /// <summary>dma_buf_map_attachment: the exporter could not map the buffer for the device.</summary>
    Map,
}

/// <summary>
/// An importer's hold on a dma-buf: the reference taken by dma_buf_get, the device's attachment and its
/// mapping. <see cref="Import"/> does the usual get, attach, map sequence, unwinding on failure;
/// <see cref="Dispose"/> unmaps, detaches and puts, once. Used by gntdev's import, the scan-out engine
/// and the IOMMU importer.
/// </summary>
public sealed class DmaBufMapping : IDisposable
{
    private DmaBufObject? _buffer;

    private DmaBufMapping(DmaBufObject buffer, DmaBufAttachment attachment, SgTable table, DmaDirection direction)
    {
        _buffer = buffer;
        Buffer = buffer;
        Attachment = attachment;
        Table = table;
        Direction = direction;
    }

    /// <summary>The buffer.</summary>
    public DmaBufObject Buffer { get; }

    /// <summary>The device's attachment.</summary>
    public DmaBufAttachment Attachment { get; }

    /// <summary>The mapped sg table.</summary>
    public SgTable Table { get; }

    /// <summary>The direction it was mapped with.</summary>
    public DmaDirection Direction { get; }

    /// <summary>True until disposed.</summary>
    public bool IsHeld => Volatile.Read(ref _buffer) is not null;

    /// <summary>dma_buf_get + dma_buf_attach + dma_buf_map_attachment for <paramref name="device"/>, or null
    /// with the errno and the step that failed (everything taken before it is given back).</summary>
    public static DmaBufMapping? Import(GuestProcess process, int fd, DmaDevice device, DmaDirection direction, out int errno, out DmaBufImportStep failedAt)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentNullException.ThrowIfNull(device);
        failedAt = DmaBufImportStep.Get;
        var buffer = DmaBufObject.Get(process, fd, out errno);
        if (buffer is null) return null;
        failedAt = DmaBufImportStep.Attach;
        var attachment = buffer.Attach(device, out errno);
        if (attachment is null)
        {
            buffer.Put();
            return null;
        }
        failedAt = DmaBufImportStep.Map;
        var table = buffer.MapAttachment(attachment, direction, out errno);
        if (table is null)
        {
            buffer.Detach(attachment);
            buffer.Put();
            return null;
        }
        failedAt = DmaBufImportStep.None;
        return new DmaBufMapping(buffer, attachment, table, direction);
    }

    /// <summary>Unmaps, detaches and drops the reference (once).</summary>
    public void Dispose()
    {
        var buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is null) return;
        buffer.UnmapAttachment(Attachment, Table, Direction);
        buffer.Detach(Attachment);
        buffer.Put();
    }
}
