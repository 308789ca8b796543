using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Devices;

// The ioctl ABI of XenShare's emulated device with an MMU of its own (a GPU's page tables, a video engine behind
// an IOMMU its driver programs), /dev/xenshare/iommu<N>: a process imports any dma-buf (scattered or contiguous)
// and has the device read it through its IOVA, all through IGuestProcess.

/// <summary><c>struct xenshare_iommu_import</c> (24 bytes): imports a dma-buf (dma_buf_get, attach, map).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xenshare_iommu_import
{
    /// <summary>In: the dma-buf fd in the calling process.</summary>
    public uint fd;
    /// <summary>In: the DMA direction (0 bidirectional, 1 to the device, 2 from the device).</summary>
    public uint direction;
    /// <summary>Out: the import's handle on this open file.</summary>
    public uint handle;
    /// <summary>Out: DMA segments of the mapping as the device sees it (1: one IOVA range).</summary>
    public uint segments;
    /// <summary>Out: the buffer's size in bytes.</summary>
    public ulong size;
}

/// <summary><c>struct xenshare_iommu_handle</c> (8 bytes): names an import of the open file.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xenshare_iommu_handle
{
    /// <summary>The import's handle.</summary>
    public uint handle;
    /// <summary>Must be 0.</summary>
    public uint reserved;
}

/// <summary><c>struct xenshare_iommu_read</c> (16 bytes, then <c>length</c> bytes of data): the device reads
/// <c>length</c> bytes at <c>offset</c> of an import through its IOVA into the bytes after the header.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xenshare_iommu_read
{
    /// <summary>The import's handle.</summary>
    public uint handle;
    /// <summary>Bytes to read (the argument holds them after this header).</summary>
    public uint length;
    /// <summary>Offset in the buffer.</summary>
    public ulong offset;
}

/// <summary>Ioctl numbers of the emulated IOMMU device (type 'X', numbers from 0x50).</summary>
public static class IommuDeviceIoctl
{
    /// <summary>The first such device's path.</summary>
    public const string DefaultPath = "/dev/xenshare/iommu0";

    /// <summary>Bytes one READ may return.</summary>
    public const int MaxRead = 1 << 20;

    /// <summary>XENSHARE_IOMMU_IOCTL_IMPORT (EBADF, EINVAL, ENOMEM, the exporter's errno).</summary>
    public static readonly uint XENSHARE_IOMMU_IOCTL_IMPORT = Ioc.Encode(Ioc.Read | Ioc.Write, 'X', 0x50, Unsafe.SizeOf<xenshare_iommu_import>());

    /// <summary>XENSHARE_IOMMU_IOCTL_RELEASE (ENOENT when unknown).</summary>
    public static readonly uint XENSHARE_IOMMU_IOCTL_RELEASE = Ioc.Encode(Ioc.Write, 'X', 0x51, Unsafe.SizeOf<xenshare_iommu_handle>());

    /// <summary>XENSHARE_IOMMU_IOCTL_READ (ENOENT, EINVAL beyond the buffer or MaxRead, EFAULT when the argument is
    /// shorter than the header plus length).</summary>
    public static readonly uint XENSHARE_IOMMU_IOCTL_READ = Ioc.Encode(Ioc.Read | Ioc.Write, 'X', 0x52, Unsafe.SizeOf<xenshare_iommu_read>());
}
