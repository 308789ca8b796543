using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Emulation.Devices;

/// <summary>
/// An emulated device behind its own IOMMU (<see cref="DmaTranslation.Iommu"/>), for example a video
/// decoder or a GPU with an SMMU: it imports any dma-buf, contiguous or scattered, because the IOMMU maps
/// every page list at one contiguous IOVA range. Each import keeps its attachment and mapping until
/// disposed; the device reads through the IOVA with <see cref="DmaDevice.DmaRead"/>.
/// </summary>
/// <remarks>Lock: <c>_lock</c> guards the import list (a leaf apart from the dma-buf calls made on
/// dispose, which take only the dma-buf's own leaf lock).</remarks>
public sealed class IommuImporter : IDisposable
{
    private readonly object _lock = new();
    private readonly List<Import> _imports = new();

    /// <summary>Creates the device in <paramref name="kernel"/>.</summary>
    /// <param name="kernel">The kernel the device belongs to.</param>
    /// <param name="name">Device name.</param>
    /// <param name="dmaMask">The highest IOVA the device can reach.</param>
    public IommuImporter(GuestKernel kernel, string name = "iommu-importer0", ulong dmaMask = ulong.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Device = new DmaDevice(kernel, name, DmaTranslation.Iommu, dmaMask);
    }

    /// <summary>The device.</summary>
    public DmaDevice Device { get; }

    /// <summary>Live imports.</summary>
    public int ImportCount { get { lock (_lock) return _imports.Count; } }

    /// <summary>Imports the dma-buf at <paramref name="dmaBufFd"/> of <paramref name="process"/>: get,
    /// attach, map with <paramref name="direction"/>. Throws <see cref="DeviceException"/> with the
    /// errno on failure.</summary>
    public Import ImportBuffer(GuestProcess process, int dmaBufFd, DmaDirection direction = DmaDirection.Bidirectional)
    {
        ArgumentNullException.ThrowIfNull(process);
        var mapping = DmaBufMapping.Import(process, dmaBufFd, Device, direction, out int errno, out var failedAt)
            ?? throw new DeviceException(-errno, failedAt switch
            {
                DmaBufImportStep.Get => "iommu import: dma_buf_get",
                DmaBufImportStep.Attach => "iommu import: dma_buf_attach",
                _ => "iommu import: dma_buf_map_attachment",
            });
        var import = new Import(this, mapping);
        lock (_lock) _imports.Add(import);
        return import;
    }

    /// <summary>Like <see cref="ImportBuffer"/>, returning null with the errno instead of throwing.</summary>
    public Import? TryImportBuffer(GuestProcess process, int dmaBufFd, DmaDirection direction, out int errno)
    {
        ArgumentNullException.ThrowIfNull(process);
        var mapping = DmaBufMapping.Import(process, dmaBufFd, Device, direction, out errno, out _);
        if (mapping is null) return null;
        var import = new Import(this, mapping);
        lock (_lock) _imports.Add(import);
        return import;
    }

    private void Remove(Import import)
    {
        lock (_lock) _imports.Remove(import);
    }

    /// <summary>Releases every import.</summary>
    public void Dispose()
    {
        Import[] all;
        lock (_lock) all = _imports.ToArray();
        foreach (var i in all) i.Dispose();
    }

    /// <summary>One imported dma-buf: attachment plus mapping (one IOVA segment).</summary>
    public sealed class Import : IDisposable
    {
        private readonly IommuImporter _owner;
        private readonly DmaBufMapping _mapping;

        internal Import(IommuImporter owner, DmaBufMapping mapping)
        {
            _owner = owner;
            _mapping = mapping;
        }

        /// <summary>The sg table as mapped for the device.</summary>
        public SgTable Table => _mapping.Table;

        /// <summary>Size of the buffer in bytes.</summary>
        public long Size => Table.TotalLength;

        /// <summary>The device reads <paramref name="into"/>.Length bytes at <paramref name="offset"/> of the
        /// buffer through the IOVA. Returns 0 or -EFAULT.</summary>
        public int Read(long offset, Span<byte> into)
        {
            ObjectDisposedException.ThrowIf(!_mapping.IsHeld, this);
            if (offset < 0 || offset + into.Length > Size) return -Errno.EFAULT;
            return _owner.Device.DmaRead(Table.Segments[0].DmaAddress + (ulong)offset, into);
        }

        /// <summary>Unmaps, detaches and drops the reference.</summary>
        public void Dispose()
        {
            if (!_mapping.IsHeld) return;
            _mapping.Dispose();
            _owner.Remove(this);
        }
    }
}
