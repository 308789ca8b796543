using System.Runtime.InteropServices;

namespace XenShare.Abi;

// Mirror of <xen/io/displif.h>, protocol version 2 (Debian package libxen-dev; one file per header, see
// docs/design.md), including the ring types its DEFINE_RING_TYPES(xen_displif, ...) declares. The C
// arrays (reserved[5], pvt, __pad[44]) are fixed buffers; a flexible array (gref[1], ring[1]) is its
// first element, counted in sizeof as in C. AbiHeaderTests compares every size, offset and constant.

/// <summary><c>struct xendispl_dbuf_create_req</c> (40 bytes): the body of XENDISPL_OP_DBUF_CREATE.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_dbuf_create_req
{
    /// <summary>The frontend's cookie naming the new buffer.</summary>
    public ulong dbuf_cookie;
    /// <summary>Width in pixels.</summary>
    public uint width;
    /// <summary>Height in pixels.</summary>
    public uint height;
    /// <summary>Bits per pixel.</summary>
    public uint bpp;
    /// <summary>Buffer size in bytes.</summary>
    public uint buffer_sz;
    /// <summary>XENDISPL_DBUF_FLG_* flags.</summary>
    public uint flags;
    /// <summary>Grant ref of the first <see cref="xendispl_page_directory"/> page.</summary>
    public uint gref_directory;
    /// <summary>Offset of the data in the buffer.</summary>
    public uint data_ofs;
}

/// <summary><c>struct xendispl_page_directory</c> (8 bytes; a page holds the header and
/// <c>(4096 - 4) / 4</c> refs): one page of the chain that lists a buffer's grant refs.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_page_directory
{
    /// <summary>Grant ref of the next directory page, 0 on the last one.</summary>
    public uint gref_dir_next_page;
    /// <summary>The first grant ref of the page (variable-length array).</summary>
    public uint gref;
}

/// <summary><c>struct xendispl_dbuf_destroy_req</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_dbuf_destroy_req
{
    /// <summary>The buffer to release.</summary>
    public ulong dbuf_cookie;
}

/// <summary><c>struct xendispl_fb_attach_req</c> (32 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_fb_attach_req
{
    /// <summary>The buffer the framebuffer is placed on.</summary>
    public ulong dbuf_cookie;
    /// <summary>The frontend's cookie naming the new framebuffer.</summary>
    public ulong fb_cookie;
    /// <summary>Width in pixels.</summary>
    public uint width;
    /// <summary>Height in pixels.</summary>
    public uint height;
    /// <summary>Pixel format (a DRM fourcc).</summary>
    public uint pixel_format;
}

/// <summary><c>struct xendispl_fb_detach_req</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_fb_detach_req
{
    /// <summary>The framebuffer to detach.</summary>
    public ulong fb_cookie;
}

/// <summary><c>struct xendispl_set_config_req</c> (32 bytes); an <see cref="fb_cookie"/> of 0 disables
/// the connector.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_set_config_req
{
    /// <summary>The framebuffer to show, or 0.</summary>
    public ulong fb_cookie;
    /// <summary>X of the mode's origin.</summary>
    public uint x;
    /// <summary>Y of the mode's origin.</summary>
    public uint y;
    /// <summary>Width in pixels.</summary>
    public uint width;
    /// <summary>Height in pixels.</summary>
    public uint height;
    /// <summary>Bits per pixel.</summary>
    public uint bpp;
}

/// <summary><c>struct xendispl_page_flip_req</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_page_flip_req
{
    /// <summary>The framebuffer to show.</summary>
    public ulong fb_cookie;
}

/// <summary><c>struct xendispl_get_edid_req</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_get_edid_req
{
    /// <summary>Size of the frontend's buffer.</summary>
    public uint buffer_sz;
    /// <summary>Grant ref of the first directory page of the buffer.</summary>
    public uint gref_directory;
}

/// <summary><c>struct xendispl_get_edid_resp</c> (4 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_get_edid_resp
{
    /// <summary>Size of the EDID written into the buffer.</summary>
    public uint edid_sz;
}

/// <summary><c>struct xendispl_pg_flip_evt</c> (8 bytes): the body of XENDISPL_EVT_PG_FLIP.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_pg_flip_evt
{
    /// <summary>The framebuffer whose flip has been shown.</summary>
    public ulong fb_cookie;
}

/// <summary>The anonymous union <c>op</c> of <c>struct xendispl_req</c> (56 bytes): one request body per
/// operation.</summary>
[StructLayout(LayoutKind.Explicit, Size = 56)]
public unsafe struct xendispl_req_op
{
    /// <summary>XENDISPL_OP_DBUF_CREATE.</summary>
    [FieldOffset(0)] public xendispl_dbuf_create_req dbuf_create;
    /// <summary>XENDISPL_OP_DBUF_DESTROY.</summary>
    [FieldOffset(0)] public xendispl_dbuf_destroy_req dbuf_destroy;
    /// <summary>XENDISPL_OP_FB_ATTACH.</summary>
    [FieldOffset(0)] public xendispl_fb_attach_req fb_attach;
    /// <summary>XENDISPL_OP_FB_DETACH.</summary>
    [FieldOffset(0)] public xendispl_fb_detach_req fb_detach;
    /// <summary>XENDISPL_OP_SET_CONFIG.</summary>
    [FieldOffset(0)] public xendispl_set_config_req set_config;
    /// <summary>XENDISPL_OP_PG_FLIP.</summary>
    [FieldOffset(0)] public xendispl_page_flip_req pg_flip;
    /// <summary>XENDISPL_OP_GET_EDID.</summary>
    [FieldOffset(0)] public xendispl_get_edid_req get_edid;
    /// <summary>The union's size.</summary>
    [FieldOffset(0)] public fixed byte reserved[56];
}

/// <summary><c>struct xendispl_req</c> (64 bytes): a request on the ring.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct xendispl_req
{
    /// <summary>The frontend's request id, echoed in the response.</summary>
    public ushort id;
    /// <summary>XENDISPL_OP_*.</summary>
    public byte operation;
    /// <summary>Reserved.</summary>
    public fixed byte reserved[5];
    /// <summary>The body of <see cref="operation"/>.</summary>
    public xendispl_req_op op;
}

/// <summary>The anonymous union <c>op</c> of <c>struct xendispl_resp</c> (56 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 56)]
public unsafe struct xendispl_resp_op
{
    /// <summary>XENDISPL_OP_GET_EDID's response body.</summary>
    [FieldOffset(0)] public xendispl_get_edid_resp get_edid;
    /// <summary>The union's size.</summary>
    [FieldOffset(0)] public fixed byte reserved1[56];
}

/// <summary><c>struct xendispl_resp</c> (64 bytes): a response on the ring.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xendispl_resp
{
    /// <summary>The id of the request answered.</summary>
    public ushort id;
    /// <summary>The operation of the request answered.</summary>
    public byte operation;
    /// <summary>Reserved.</summary>
    public byte reserved;
    /// <summary>0, or a negative errno.</summary>
    public int status;
    /// <summary>The operation's response body.</summary>
    public xendispl_resp_op op;
}

/// <summary>The anonymous union <c>op</c> of <c>struct xendispl_evt</c> (56 bytes).</summary>
[StructLayout(LayoutKind.Explicit, Size = 56)]
public unsafe struct xendispl_evt_op
{
    /// <summary>XENDISPL_EVT_PG_FLIP's body.</summary>
    [FieldOffset(0)] public xendispl_pg_flip_evt pg_flip;
    /// <summary>The union's size.</summary>
    [FieldOffset(0)] public fixed byte reserved[56];
}

/// <summary><c>struct xendispl_evt</c> (64 bytes): an event on the event page.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct xendispl_evt
{
    /// <summary>The backend's event id.</summary>
    public ushort id;
    /// <summary>XENDISPL_EVT_*.</summary>
    public byte type;
    /// <summary>Reserved.</summary>
    public fixed byte reserved[5];
    /// <summary>The body of <see cref="type"/>.</summary>
    public xendispl_evt_op op;
}

/// <summary><c>union xen_displif_sring_entry</c> (64 bytes): one slot of the request ring.</summary>
[StructLayout(LayoutKind.Explicit)]
public struct xen_displif_sring_entry
{
    /// <summary>The request view.</summary>
    [FieldOffset(0)] public xendispl_req req;
    /// <summary>The response view.</summary>
    [FieldOffset(0)] public xendispl_resp rsp;
}

/// <summary><c>struct xen_displif_sring</c> (128 bytes with the first slot): the shared page of the
/// request ring, the header of <c>xen/io/ring.h</c>'s DEFINE_RING_TYPES (spec RG01).</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct xen_displif_sring
{
    /// <summary>Requests produced by the frontend.</summary>
    public uint req_prod;
    /// <summary>The backend wants an event when <see cref="req_prod"/> passes this.</summary>
    public uint req_event;
    /// <summary>Responses produced by the backend.</summary>
    public uint rsp_prod;
    /// <summary>The frontend wants an event when <see cref="rsp_prod"/> passes this.</summary>
    public uint rsp_event;
    /// <summary>The union <c>pvt</c> (netif/tapif private bytes).</summary>
    public fixed byte pvt[4];
    /// <summary>Padding to 64 bytes.</summary>
    public fixed byte __pad[44];
    /// <summary>The first slot (variable-length array).</summary>
    public xen_displif_sring_entry ring;
}

/// <summary><c>struct xendispl_event_page</c> (64 bytes): the header of the event page; events follow at
/// <see cref="Displif.XENDISPL_IN_RING_OFFS"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct xendispl_event_page
{
    /// <summary>Events consumed by the frontend.</summary>
    public uint in_cons;
    /// <summary>Events produced by the backend.</summary>
    public uint in_prod;
    /// <summary>Reserved.</summary>
    public fixed byte reserved[56];
}

/// <summary>The constants of <c>xen/io/displif.h</c> (protocol version 2): operations, events, flags,
/// xenstore field names, EDID limits and the event page's layout.</summary>
public static class Displif
{
    /// <summary>XENDISPL_PROTOCOL_VERSION: the version string in <c>versions</c> / <c>version</c>.</summary>
    public const string XENDISPL_PROTOCOL_VERSION = "2";
    /// <summary>XENDISPL_PROTOCOL_VERSION_INT.</summary>
    public const int XENDISPL_PROTOCOL_VERSION_INT = 2;

    /// <summary>XENDISPL_OP_DBUF_CREATE.</summary>
    public const byte XENDISPL_OP_DBUF_CREATE = 0x10;
    /// <summary>XENDISPL_OP_DBUF_DESTROY.</summary>
    public const byte XENDISPL_OP_DBUF_DESTROY = 0x11;
    /// <summary>XENDISPL_OP_FB_ATTACH.</summary>
    public const byte XENDISPL_OP_FB_ATTACH = 0x12;
    /// <summary>XENDISPL_OP_FB_DETACH.</summary>
    public const byte XENDISPL_OP_FB_DETACH = 0x13;
    /// <summary>XENDISPL_OP_SET_CONFIG.</summary>
    public const byte XENDISPL_OP_SET_CONFIG = 0x14;
    /// <summary>XENDISPL_OP_PG_FLIP.</summary>
    public const byte XENDISPL_OP_PG_FLIP = 0x15;
    /// <summary>XENDISPL_OP_GET_EDID.</summary>
    public const byte XENDISPL_OP_GET_EDID = 0x16;

    /// <summary>XENDISPL_EVT_PG_FLIP: a page flip has been shown.</summary>
    public const byte XENDISPL_EVT_PG_FLIP = 0x00;

    /// <summary>XENDISPL_DRIVER_NAME: the device type in xenstore paths.</summary>
    public const string XENDISPL_DRIVER_NAME = "vdispl";
    /// <summary>XENDISPL_LIST_SEPARATOR.</summary>
    public const string XENDISPL_LIST_SEPARATOR = ",";
    /// <summary>XENDISPL_RESOLUTION_SEPARATOR.</summary>
    public const string XENDISPL_RESOLUTION_SEPARATOR = "x";

    /// <summary>XENDISPL_FIELD_BE_VERSIONS: the backend's supported versions.</summary>
    public const string XENDISPL_FIELD_BE_VERSIONS = "versions";
    /// <summary>XENDISPL_FIELD_FE_VERSION: the version the frontend chose.</summary>
    public const string XENDISPL_FIELD_FE_VERSION = "version";
    /// <summary>XENDISPL_FIELD_REQ_RING_REF.</summary>
    public const string XENDISPL_FIELD_REQ_RING_REF = "req-ring-ref";
    /// <summary>XENDISPL_FIELD_REQ_CHANNEL.</summary>
    public const string XENDISPL_FIELD_REQ_CHANNEL = "req-event-channel";
    /// <summary>XENDISPL_FIELD_EVT_RING_REF.</summary>
    public const string XENDISPL_FIELD_EVT_RING_REF = "evt-ring-ref";
    /// <summary>XENDISPL_FIELD_EVT_CHANNEL.</summary>
    public const string XENDISPL_FIELD_EVT_CHANNEL = "evt-event-channel";
    /// <summary>XENDISPL_FIELD_RESOLUTION.</summary>
    public const string XENDISPL_FIELD_RESOLUTION = "resolution";
    /// <summary>XENDISPL_FIELD_BE_ALLOC.</summary>
    public const string XENDISPL_FIELD_BE_ALLOC = "be-alloc";
    /// <summary>XENDISPL_FIELD_UNIQUE_ID.</summary>
    public const string XENDISPL_FIELD_UNIQUE_ID = "unique-id";

    /// <summary>XENDISPL_EDID_BLOCK_SIZE.</summary>
    public const int XENDISPL_EDID_BLOCK_SIZE = 128;
    /// <summary>XENDISPL_EDID_BLOCK_COUNT.</summary>
    public const int XENDISPL_EDID_BLOCK_COUNT = 256;
    /// <summary>XENDISPL_EDID_MAX_SIZE.</summary>
    public const int XENDISPL_EDID_MAX_SIZE = XENDISPL_EDID_BLOCK_SIZE * XENDISPL_EDID_BLOCK_COUNT;

    /// <summary>XENDISPL_DBUF_FLG_REQ_ALLOC: the backend allocates the buffer (be-alloc).</summary>
    public const uint XENDISPL_DBUF_FLG_REQ_ALLOC = 1 << 0;

    /// <summary>XENDISPL_EVENT_PAGE_SIZE (displif's own constant, checked against the header; not <see cref="XenPage.Size"/>).</summary>
    public const int XENDISPL_EVENT_PAGE_SIZE = 4096;
    /// <summary>XENDISPL_IN_RING_OFFS: where the events start (sizeof(struct xendispl_event_page)).</summary>
    public const int XENDISPL_IN_RING_OFFS = 64;
    /// <summary>XENDISPL_IN_RING_SIZE: the bytes of the event ring.</summary>
    public const int XENDISPL_IN_RING_SIZE = XENDISPL_EVENT_PAGE_SIZE - XENDISPL_IN_RING_OFFS;
    /// <summary>XENDISPL_IN_RING_LEN: the number of events in the ring (not a power of two: an index is
    /// reduced modulo it).</summary>
    public const int XENDISPL_IN_RING_LEN = XENDISPL_IN_RING_SIZE / 64;
}
