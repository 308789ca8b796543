using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Abi;

// Mirror of <xen/gntdev.h>. C names are kept so that a reader can grep the header; one file per
// header rather than one per type (a deliberate exception to the one-type-per-file rule, see
// docs/design.md). Field order and sizes are proven against the system headers by AbiHeaderTests.

/// <summary><c>struct ioctl_gntdev_grant_ref</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_grant_ref
{
    /// <summary>The granting domain.</summary>
    public uint domid;
    /// <summary>The grant reference in the granter's table.</summary>
    public uint @ref;
}

/// <summary><c>struct ioctl_gntdev_map_grant_ref</c> (24 bytes; refs at 16, one element counted in sizeof).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_map_grant_ref
{
    /// <summary>Number of grants in <see cref="refs"/>.</summary>
    public uint count;
    /// <summary>Padding.</summary>
    public uint pad;
    /// <summary>Out: the mmap offset of the new map.</summary>
    public ulong index;
    /// <summary>The first of <see cref="count"/> grant refs (variable-length array).</summary>
    public ioctl_gntdev_grant_ref refs;
}

/// <summary><c>struct ioctl_gntdev_unmap_grant_ref</c> (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_unmap_grant_ref
{
    /// <summary>The mmap offset returned by MAP_GRANT_REF.</summary>
    public ulong index;
    /// <summary>Number of pages.</summary>
    public uint count;
    /// <summary>Padding.</summary>
    public uint pad;
}

/// <summary><c>struct ioctl_gntdev_get_offset_for_vaddr</c> (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_get_offset_for_vaddr
{
    /// <summary>A virtual address inside a gntdev mapping.</summary>
    public ulong vaddr;
    /// <summary>Out: the mmap offset of the map.</summary>
    public ulong offset;
    /// <summary>Out: the number of pages of the map.</summary>
    public uint count;
    /// <summary>Padding.</summary>
    public uint pad;
}

/// <summary><c>struct ioctl_gntdev_set_max_grants</c> (4 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_set_max_grants
{
    /// <summary>The requested maximum.</summary>
    public uint count;
}

/// <summary><c>struct ioctl_gntdev_unmap_notify</c> (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_unmap_notify
{
    /// <summary>Byte offset (mmap offset plus offset in the map) of the notify byte.</summary>
    public ulong index;
    /// <summary>UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT.</summary>
    public uint action;
    /// <summary>The event channel port to notify.</summary>
    public uint event_channel_port;
}

/// <summary>The <c>foreign</c> member of the source/dest union of <c>gntdev_grant_copy_segment</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct gntdev_grant_copy_foreign
{
    /// <summary>Grant reference.</summary>
    public uint @ref;
    /// <summary>Offset within the granted page.</summary>
    public ushort offset;
    /// <summary>Granting domain.</summary>
    public ushort domid;
}

/// <summary>The source/dest union of <c>gntdev_grant_copy_segment</c>: a local virtual address or a foreign grant.</summary>
[StructLayout(LayoutKind.Explicit, Size = 8)]
public struct gntdev_grant_copy_ptr
{
    /// <summary>Local user virtual address.</summary>
    [FieldOffset(0)] public ulong virt;
    /// <summary>Foreign grant operand.</summary>
    [FieldOffset(0)] public gntdev_grant_copy_foreign foreign;
}

/// <summary><c>struct gntdev_grant_copy_segment</c> (24 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct gntdev_grant_copy_segment
{
    /// <summary>Source operand.</summary>
    public gntdev_grant_copy_ptr source;
    /// <summary>Destination operand.</summary>
    public gntdev_grant_copy_ptr dest;
    /// <summary>Bytes to copy.</summary>
    public ushort len;
    /// <summary>GNTCOPY_source_gref | GNTCOPY_dest_gref.</summary>
    public ushort flags;
    /// <summary>Out: GNTST status of this segment.</summary>
    public short status;
}

/// <summary><c>struct ioctl_gntdev_grant_copy</c> (16 bytes on 64-bit).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_grant_copy
{
    /// <summary>Number of segments.</summary>
    public uint count;
    /// <summary>User pointer to the segment array.</summary>
    public ulong segments;
}

/// <summary><c>struct ioctl_gntdev_dmabuf_exp_from_refs</c> (20 bytes; refs at 16).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_dmabuf_exp_from_refs
{
    /// <summary>GNTDEV_DMA_FLAG_WC | GNTDEV_DMA_FLAG_COHERENT.</summary>
    public uint flags;
    /// <summary>Number of refs.</summary>
    public uint count;
    /// <summary>Out: the new dma-buf fd.</summary>
    public uint fd;
    /// <summary>The granting domain.</summary>
    public uint domid;
    /// <summary>The first of <see cref="count"/> refs.</summary>
    public uint refs;
}

/// <summary><c>struct ioctl_gntdev_dmabuf_exp_wait_released</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_dmabuf_exp_wait_released
{
    /// <summary>The fd number returned at export.</summary>
    public uint fd;
    /// <summary>Timeout in milliseconds.</summary>
    public uint wait_to_ms;
}

/// <summary><c>struct ioctl_gntdev_dmabuf_imp_to_refs</c> (20 bytes; refs at 16).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_dmabuf_imp_to_refs
{
    /// <summary>The dma-buf fd to import.</summary>
    public uint fd;
    /// <summary>Number of pages.</summary>
    public uint count;
    /// <summary>The domain to grant to.</summary>
    public uint domid;
    /// <summary>Reserved, not checked.</summary>
    public uint reserved;
    /// <summary>Out: the first of <see cref="count"/> refs.</summary>
    public uint refs;
}

/// <summary><c>struct ioctl_gntdev_dmabuf_imp_release</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntdev_dmabuf_imp_release
{
    /// <summary>The fd number given at import.</summary>
    public uint fd;
    /// <summary>Reserved, not checked.</summary>
    public uint reserved;
}

/// <summary>Ioctl numbers and constants of <c>xen/gntdev.h</c>.</summary>
public static class GntDevIoctl
{
    /// <summary>IOCTL_GNTDEV_MAP_GRANT_REF.</summary>
    public static readonly uint IOCTL_GNTDEV_MAP_GRANT_REF = Ioc.Encode(Ioc.None, 'G', 0, Unsafe.SizeOf<ioctl_gntdev_map_grant_ref>());
    /// <summary>IOCTL_GNTDEV_UNMAP_GRANT_REF.</summary>
    public static readonly uint IOCTL_GNTDEV_UNMAP_GRANT_REF = Ioc.Encode(Ioc.None, 'G', 1, Unsafe.SizeOf<ioctl_gntdev_unmap_grant_ref>());
    /// <summary>IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR.</summary>
    public static readonly uint IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR = Ioc.Encode(Ioc.None, 'G', 2, Unsafe.SizeOf<ioctl_gntdev_get_offset_for_vaddr>());
    /// <summary>IOCTL_GNTDEV_SET_MAX_GRANTS.</summary>
    public static readonly uint IOCTL_GNTDEV_SET_MAX_GRANTS = Ioc.Encode(Ioc.None, 'G', 3, Unsafe.SizeOf<ioctl_gntdev_set_max_grants>());
    /// <summary>IOCTL_GNTDEV_SET_UNMAP_NOTIFY.</summary>
    public static readonly uint IOCTL_GNTDEV_SET_UNMAP_NOTIFY = Ioc.Encode(Ioc.None, 'G', 7, Unsafe.SizeOf<ioctl_gntdev_unmap_notify>());
    /// <summary>IOCTL_GNTDEV_GRANT_COPY.</summary>
    public static readonly uint IOCTL_GNTDEV_GRANT_COPY = Ioc.Encode(Ioc.None, 'G', 8, Unsafe.SizeOf<ioctl_gntdev_grant_copy>());
    /// <summary>IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS.</summary>
    public static readonly uint IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS = Ioc.Encode(Ioc.None, 'G', 9, Unsafe.SizeOf<ioctl_gntdev_dmabuf_exp_from_refs>());
    /// <summary>IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED.</summary>
    public static readonly uint IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED = Ioc.Encode(Ioc.None, 'G', 10, Unsafe.SizeOf<ioctl_gntdev_dmabuf_exp_wait_released>());
    /// <summary>IOCTL_GNTDEV_DMABUF_IMP_TO_REFS.</summary>
    public static readonly uint IOCTL_GNTDEV_DMABUF_IMP_TO_REFS = Ioc.Encode(Ioc.None, 'G', 11, Unsafe.SizeOf<ioctl_gntdev_dmabuf_imp_to_refs>());
    /// <summary>IOCTL_GNTDEV_DMABUF_IMP_RELEASE.</summary>
    public static readonly uint IOCTL_GNTDEV_DMABUF_IMP_RELEASE = Ioc.Encode(Ioc.None, 'G', 12, Unsafe.SizeOf<ioctl_gntdev_dmabuf_imp_release>());

    /// <summary>UNMAP_NOTIFY_CLEAR_BYTE.</summary>
    public const uint UNMAP_NOTIFY_CLEAR_BYTE = 0x1;
    /// <summary>UNMAP_NOTIFY_SEND_EVENT.</summary>
    public const uint UNMAP_NOTIFY_SEND_EVENT = 0x2;
    /// <summary>GNTDEV_DMA_FLAG_WC.</summary>
    public const uint GNTDEV_DMA_FLAG_WC = 1 << 0;
    /// <summary>GNTDEV_DMA_FLAG_COHERENT.</summary>
    public const uint GNTDEV_DMA_FLAG_COHERENT = 1 << 1;

    /// <summary>Byte offset of <c>refs</c> in <c>ioctl_gntdev_map_grant_ref</c>.</summary>
    public static readonly int MapGrantRefRefsOffset = (int)Marshal.OffsetOf<ioctl_gntdev_map_grant_ref>(nameof(ioctl_gntdev_map_grant_ref.refs));
    /// <summary>Byte offset of <c>refs</c> in the dma-buf export and import structs.</summary>
    public static readonly int DmaBufRefsOffset = (int)Marshal.OffsetOf<ioctl_gntdev_dmabuf_exp_from_refs>(nameof(ioctl_gntdev_dmabuf_exp_from_refs.refs));
}
