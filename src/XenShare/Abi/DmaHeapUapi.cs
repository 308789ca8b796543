using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Abi;

// Mirror of <linux/dma-heap.h> (one file per header, see docs/design.md): the standard way for user
// space to get a local dma-buf, used by the import path.

/// <summary><c>struct dma_heap_allocation_data</c> (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct dma_heap_allocation_data
{
    /// <summary>Size in bytes.</summary>
    public ulong len;
    /// <summary>Out: the dma-buf fd.</summary>
    public uint fd;
    /// <summary>O_CLOEXEC | O_ACCMODE for the new fd.</summary>
    public uint fd_flags;
    /// <summary>Heap flags (none defined).</summary>
    public ulong heap_flags;
}

/// <summary>Ioctl numbers of <c>linux/dma-heap.h</c>.</summary>
public static class DmaHeapIoctl
{
    /// <summary>DMA_HEAP_IOCTL_ALLOC.</summary>
    public static readonly uint DMA_HEAP_IOCTL_ALLOC = Ioc.Encode(Ioc.Read | Ioc.Write, 'H', 0, Unsafe.SizeOf<dma_heap_allocation_data>());
}
