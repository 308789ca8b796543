using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Abi;

// Mirror of <linux/dma-buf.h> (one file per header, see docs/design.md).

/// <summary><c>struct dma_buf_sync</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct dma_buf_sync
{
    /// <summary>DMA_BUF_SYNC_* flags.</summary>
    public ulong flags;
}

/// <summary><c>struct dma_buf_export_sync_file</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct dma_buf_export_sync_file
{
    /// <summary>DMA_BUF_SYNC_READ/WRITE.</summary>
    public uint flags;
    /// <summary>Out: the sync_file fd.</summary>
    public int fd;
}

/// <summary><c>struct dma_buf_import_sync_file</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct dma_buf_import_sync_file
{
    /// <summary>DMA_BUF_SYNC_READ/WRITE.</summary>
    public uint flags;
    /// <summary>The sync_file fd.</summary>
    public int fd;
}

/// <summary>Ioctl numbers and constants of <c>linux/dma-buf.h</c>.</summary>
public static class DmaBufIoctl
{
    /// <summary>DMA_BUF_BASE.</summary>
    public const char DMA_BUF_BASE = 'b';
    /// <summary>DMA_BUF_IOCTL_SYNC.</summary>
    public static readonly uint DMA_BUF_IOCTL_SYNC = Ioc.Encode(Ioc.Write, DMA_BUF_BASE, 0, Unsafe.SizeOf<dma_buf_sync>());
    /// <summary>DMA_BUF_SET_NAME_A (u32 argument).</summary>
    public static readonly uint DMA_BUF_SET_NAME_A = Ioc.Encode(Ioc.Write, DMA_BUF_BASE, 1, sizeof(uint));
    /// <summary>DMA_BUF_SET_NAME_B (u64 argument).</summary>
    public static readonly uint DMA_BUF_SET_NAME_B = Ioc.Encode(Ioc.Write, DMA_BUF_BASE, 1, sizeof(ulong));
    /// <summary>DMA_BUF_IOCTL_EXPORT_SYNC_FILE.</summary>
    public static readonly uint DMA_BUF_IOCTL_EXPORT_SYNC_FILE = Ioc.Encode(Ioc.Read | Ioc.Write, DMA_BUF_BASE, 2, Unsafe.SizeOf<dma_buf_export_sync_file>());
    /// <summary>DMA_BUF_IOCTL_IMPORT_SYNC_FILE.</summary>
    public static readonly uint DMA_BUF_IOCTL_IMPORT_SYNC_FILE = Ioc.Encode(Ioc.Write, DMA_BUF_BASE, 3, Unsafe.SizeOf<dma_buf_import_sync_file>());
    /// <summary>DMA_BUF_SYNC_READ.</summary>
    public const ulong DMA_BUF_SYNC_READ = 1 << 0;
    /// <summary>DMA_BUF_SYNC_WRITE.</summary>
    public const ulong DMA_BUF_SYNC_WRITE = 2 << 0;
    /// <summary>DMA_BUF_SYNC_RW.</summary>
    public const ulong DMA_BUF_SYNC_RW = DMA_BUF_SYNC_READ | DMA_BUF_SYNC_WRITE;
    /// <summary>DMA_BUF_SYNC_START.</summary>
    public const ulong DMA_BUF_SYNC_START = 0 << 2;
    /// <summary>DMA_BUF_SYNC_END.</summary>
    public const ulong DMA_BUF_SYNC_END = 1 << 2;
    /// <summary>DMA_BUF_SYNC_VALID_FLAGS_MASK.</summary>
    public const ulong DMA_BUF_SYNC_VALID_FLAGS_MASK = DMA_BUF_SYNC_RW | DMA_BUF_SYNC_END;
}
