using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Devices;
using XenShare.Emulation.Devices;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// The driver of an emulated device with its own MMU (<see cref="IommuImporter"/>), reached by any process of its
/// kernel through the seam at <c>/dev/xenshare/iommu&lt;N&gt;</c> (<see cref="IommuDeviceIoctl"/>): IMPORT maps a
/// dma-buf of the caller for the device (what the DMA API gave it, mapped at one IOVA range), READ has the device
/// read through its IOVA, RELEASE lets the import go. Imports belong to the open file and go when it closes.
/// </summary>
/// <remarks>Lock: each file's <c>_lock</c> guards its import table; the importer's calls made under it take the
/// importer's leaf lock and the dma-buf's (file &lt; importer &lt; dma-buf).</remarks>
internal sealed class IommuDriver : ImporterDeviceDriver
{
    /// <summary>Creates the device in <paramref name="kernel"/> and registers its file.</summary>
    public IommuDriver(GuestKernel kernel, string name)
        : base(kernel, name)
    {
        Importer = new IommuImporter(kernel, name);
    }

    /// <summary>The device.</summary>
    public IommuImporter Importer { get; }

    protected override int HeldCount => Importer.ImportCount;

    protected override string HeldWhat => "import(s)";

    protected override KernelFile OpenFile() => new IommuFile(this);

    private sealed class IommuFile(IommuDriver driver) : KernelFile
    {
        private readonly object _lock = new();
        private readonly Dictionary<uint, IommuImporter.Import> _imports = new();
        private uint _next = 1;
        private bool _released;

        public override int Ioctl(GuestProcess caller, uint request, Span<byte> arg)
        {
            if (request == IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_IMPORT) return Import(caller, arg);
            if (request == IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_READ) return Read(arg);
            if (request == IommuDeviceIoctl.XENSHARE_IOMMU_IOCTL_RELEASE) return Release(arg);
            return -Errno.ENOTTY;
        }

        private int Import(GuestProcess caller, Span<byte> arg)
        {
            if (arg.Length < Unsafe.SizeOf<xenshare_iommu_import>()) return -Errno.EFAULT;
            ref var op = ref MemoryMarshal.AsRef<xenshare_iommu_import>(arg);
            if (op.direction > 2) return -Errno.EINVAL;
            if (op.fd > int.MaxValue) return -Errno.EBADF;
            var import = driver.Importer.TryImportBuffer(caller, (int)op.fd, (DmaDirection)op.direction, out int errno);
            if (import is null) return errno;
            uint handle;
            lock (_lock)
            {
                if (_released)
                {
                    import.Dispose();
                    return -Errno.EBADF;
                }
                handle = _next++;
                _imports[handle] = import;
            }
            op.handle = handle;
            op.segments = (uint)import.Table.Segments.Count;
            op.size = (ulong)import.Size;
            return 0;
        }

        private int Read(Span<byte> arg)
        {
            int header = Unsafe.SizeOf<xenshare_iommu_read>();
            if (arg.Length < header) return -Errno.EFAULT;
            var op = MemoryMarshal.Read<xenshare_iommu_read>(arg);
            if (op.length > IommuDeviceIoctl.MaxRead) return -Errno.EINVAL;
            if (arg.Length - header < op.length) return -Errno.EFAULT;
            lock (_lock)
            {
                if (!_imports.TryGetValue(op.handle, out var import)) return -Errno.ENOENT;
                if (op.offset > (ulong)import.Size || op.length > (ulong)import.Size - op.offset) return -Errno.EINVAL;
                return import.Read((long)op.offset, arg.Slice(header, (int)op.length));
            }
        }

        private int Release(Span<byte> arg)
        {
            if (arg.Length < Unsafe.SizeOf<xenshare_iommu_handle>()) return -Errno.EFAULT;
            var op = MemoryMarshal.Read<xenshare_iommu_handle>(arg);
            if (op.reserved != 0) return -Errno.EINVAL;
            IommuImporter.Import? import;
            lock (_lock)
            {
                if (!_imports.Remove(op.handle, out import)) return -Errno.ENOENT;
            }
            import.Dispose();
            return 0;
        }

        protected override void Release()
        {
            IommuImporter.Import[] all;
            lock (_lock)
            {
                _released = true;
                all = [.. _imports.Values];
                _imports.Clear();
            }
            foreach (var import in all) import.Dispose();
            driver.FileReleased();
        }
    }
}
