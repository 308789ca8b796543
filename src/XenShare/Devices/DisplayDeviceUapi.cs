using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Devices;

// The ioctl ABI of XenShare's emulated display controller, /dev/xenshare/display<N> (issue 12: importers behind
// the seam). It is XenShare's own device, not a Linux one, so it lives outside XenShare.Abi (whose every struct
// mirrors a C header): a process imports a dma-buf as a framebuffer, flips, syncs a bounced buffer and reads the
// scanned-out frame back, all through IGuestProcess like gntdev. Layouts are fixed (little-endian, no padding
// surprises) so a C program could use them too.

/// <summary><c>struct xenshare_display_fb_import</c> (40 bytes): imports a dma-buf as a framebuffer (dma_buf_get,
/// attach, map DMA_TO_DEVICE; the display takes one DMA segment).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xenshare_display_fb_import
{
    /// <summary>In: the dma-buf fd in the calling process.</summary>
    public uint fd;
    /// <summary>In: width in pixels.</summary>
    public uint width;
    /// <summary>In: height in pixels.</summary>
    public uint height;
    /// <summary>In: bytes between rows.</summary>
    public uint stride;
    /// <summary>In: the pixel format (DRM fourcc; the display shows 32-bit XRGB/ARGB).</summary>
    public uint fourcc;
    /// <summary>Out: the framebuffer's id on this open file.</summary>
    public uint fb_id;
    /// <summary>Out: DMA segments of the mapping (1).</summary>
    public uint segments;
    /// <summary>Must be 0.</summary>
    public uint reserved;
    /// <summary>Out: bytes the display reaches through swiotlb bounce buffers (0: in place).</summary>
    public ulong bounced_bytes;
}

/// <summary><c>struct xenshare_display_fb</c> (8 bytes): names a framebuffer of the open file.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xenshare_display_fb
{
    /// <summary>The framebuffer id.</summary>
    public uint fb_id;
    /// <summary>Must be 0.</summary>
    public uint reserved;
}

/// <summary><c>struct xenshare_display_fb_sync</c> (16 bytes): dma_sync_sgtable_for_device of a framebuffer.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xenshare_display_fb_sync
{
    /// <summary>In: the framebuffer id.</summary>
    public uint fb_id;
    /// <summary>Must be 0.</summary>
    public uint reserved;
    /// <summary>Out: bytes copied (0 for a buffer read in place).</summary>
    public ulong bytes_copied;
}

/// <summary><c>struct xenshare_display_stats</c> (72 bytes): the display's counters.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xenshare_display_stats
{
    /// <summary>Flips latched.</summary>
    public ulong flips;
    /// <summary>Frames scanned out (each read of the device scans one out).</summary>
    public ulong frames_scanned_out;
    /// <summary>Frames scanned out with no byte from a bounce buffer.</summary>
    public ulong zero_copy_frames;
    /// <summary>Bytes delivered by scan-outs.</summary>
    public ulong bytes_scanned_out;
    /// <summary>Bytes the CPU copied for the display (swiotlb bounces at import, sync and release).</summary>
    public ulong cpu_bytes_copied;
    /// <summary>Bytes the emulator gathered through the device's translation (device DMA, not a CPU copy).</summary>
    public ulong gathered_bytes;
    /// <summary>Imports refused with ENOMEM (the buffer could not be mapped for the display).</summary>
    public ulong mapping_errors;
    /// <summary>Framebuffers imported now (all files).</summary>
    public uint framebuffers;
    /// <summary>1 when the display's domain is direct-mapped (machine addresses through the Xen swiotlb).</summary>
    public uint direct_mapped;
    /// <summary>Bytes the display's domain's swiotlb copied in all.</summary>
    public ulong swiotlb_bytes_copied;
}

/// <summary>Ioctl numbers of the emulated display device (type 'X', numbers from 0x40).</summary>
public static class DisplayDeviceIoctl
{
    /// <summary>The first display's path.</summary>
    public const string DefaultPath = "/dev/xenshare/display0";

    /// <summary>XENSHARE_DISPLAY_IOCTL_FB_IMPORT: import a dma-buf (EBADF, EINVAL, ENOMEM, the exporter's errno).</summary>
    public static readonly uint XENSHARE_DISPLAY_IOCTL_FB_IMPORT = Ioc.Encode(Ioc.Read | Ioc.Write, 'X', 0x40, Unsafe.SizeOf<xenshare_display_fb_import>());

    /// <summary>XENSHARE_DISPLAY_IOCTL_FB_RELEASE: release a framebuffer (ENOENT when unknown).</summary>
    public static readonly uint XENSHARE_DISPLAY_IOCTL_FB_RELEASE = Ioc.Encode(Ioc.Write, 'X', 0x41, Unsafe.SizeOf<xenshare_display_fb>());

    /// <summary>XENSHARE_DISPLAY_IOCTL_FLIP: latch a framebuffer as the front buffer (ENOENT when unknown).</summary>
    public static readonly uint XENSHARE_DISPLAY_IOCTL_FLIP = Ioc.Encode(Ioc.Write, 'X', 0x42, Unsafe.SizeOf<xenshare_display_fb>());

    /// <summary>XENSHARE_DISPLAY_IOCTL_FB_SYNC: what the CPU wrote reaches a bounced framebuffer.</summary>
    public static readonly uint XENSHARE_DISPLAY_IOCTL_FB_SYNC = Ioc.Encode(Ioc.Read | Ioc.Write, 'X', 0x43, Unsafe.SizeOf<xenshare_display_fb_sync>());

    /// <summary>XENSHARE_DISPLAY_IOCTL_STATS: read the counters.</summary>
    public static readonly uint XENSHARE_DISPLAY_IOCTL_STATS = Ioc.Encode(Ioc.Read, 'X', 0x44, Unsafe.SizeOf<xenshare_display_stats>());
}
