using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Abi;

// Mirror of <xen/gntalloc.h> (one file per header, see docs/design.md).

/// <summary><c>struct ioctl_gntalloc_alloc_gref</c> (24 bytes; gref_ids at 16).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntalloc_alloc_gref
{
    /// <summary>The domain to grant to.</summary>
    public ushort domid;
    /// <summary>GNTALLOC_FLAG_WRITABLE.</summary>
    public ushort flags;
    /// <summary>Number of pages.</summary>
    public uint count;
    /// <summary>Out: mmap offset.</summary>
    public ulong index;
    /// <summary>Out: the first of <see cref="count"/> grant refs.</summary>
    public uint gref_ids;
}

/// <summary><c>struct ioctl_gntalloc_dealloc_gref</c> (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntalloc_dealloc_gref
{
    /// <summary>The mmap offset returned by ALLOC_GREF.</summary>
    public ulong index;
    /// <summary>Number of pages.</summary>
    public uint count;
}

/// <summary><c>struct ioctl_gntalloc_unmap_notify</c> (16 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_gntalloc_unmap_notify
{
    /// <summary>Byte offset of the notify byte.</summary>
    public ulong index;
    /// <summary>UNMAP_NOTIFY_CLEAR_BYTE | UNMAP_NOTIFY_SEND_EVENT.</summary>
    public uint action;
    /// <summary>The event channel port to notify.</summary>
    public uint event_channel_port;
}

/// <summary>Ioctl numbers and constants of <c>xen/gntalloc.h</c>.</summary>
public static class GntAllocIoctl
{
    /// <summary>IOCTL_GNTALLOC_ALLOC_GREF.</summary>
    public static readonly uint IOCTL_GNTALLOC_ALLOC_GREF = Ioc.Encode(Ioc.None, 'G', 5, Unsafe.SizeOf<ioctl_gntalloc_alloc_gref>());
    /// <summary>IOCTL_GNTALLOC_DEALLOC_GREF.</summary>
    public static readonly uint IOCTL_GNTALLOC_DEALLOC_GREF = Ioc.Encode(Ioc.None, 'G', 6, Unsafe.SizeOf<ioctl_gntalloc_dealloc_gref>());
    /// <summary>IOCTL_GNTALLOC_SET_UNMAP_NOTIFY (same number as gntdev's).</summary>
    public static readonly uint IOCTL_GNTALLOC_SET_UNMAP_NOTIFY = Ioc.Encode(Ioc.None, 'G', 7, Unsafe.SizeOf<ioctl_gntalloc_unmap_notify>());
    /// <summary>GNTALLOC_FLAG_WRITABLE.</summary>
    public const ushort GNTALLOC_FLAG_WRITABLE = 1;
    /// <summary>Byte offset of <c>gref_ids</c>.</summary>
    public static readonly int GrefIdsOffset = (int)Marshal.OffsetOf<ioctl_gntalloc_alloc_gref>(nameof(ioctl_gntalloc_alloc_gref.gref_ids));
}
