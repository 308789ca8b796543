using System.Runtime.InteropServices;

namespace XenShare.Abi;

// Mirror of <xen/io/xs_wire.h> (Debian package libxen-dev; one file per header, see docs/design.md).

/// <summary><c>struct xsd_sockmsg</c> (16 bytes): the header of every xenstore message; <see cref="len"/>
/// payload bytes follow (at most <see cref="XsWire.XENSTORE_PAYLOAD_MAX"/>).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct xsd_sockmsg
{
    /// <summary>The message type (<c>enum xsd_sockmsg_type</c>, <see cref="XsWire"/>'s XS_* constants).</summary>
    public uint type;
    /// <summary>Request identifier, echoed in the daemon's reply.</summary>
    public uint req_id;
    /// <summary>Transaction id (0 outside a transaction).</summary>
    public uint tx_id;
    /// <summary>Length of the payload that follows.</summary>
    public uint len;
}

/// <summary>Message types, limits and the error table of <c>xen/io/xs_wire.h</c>.</summary>
public static class XsWire
{
    /// <summary>XS_CONTROL (also XS_DEBUG).</summary>
    public const uint XS_CONTROL = 0;
    /// <summary>XS_DIRECTORY.</summary>
    public const uint XS_DIRECTORY = 1;
    /// <summary>XS_READ.</summary>
    public const uint XS_READ = 2;
    /// <summary>XS_GET_PERMS.</summary>
    public const uint XS_GET_PERMS = 3;
    /// <summary>XS_WATCH.</summary>
    public const uint XS_WATCH = 4;
    /// <summary>XS_UNWATCH.</summary>
    public const uint XS_UNWATCH = 5;
    /// <summary>XS_TRANSACTION_START.</summary>
    public const uint XS_TRANSACTION_START = 6;
    /// <summary>XS_TRANSACTION_END.</summary>
    public const uint XS_TRANSACTION_END = 7;
    /// <summary>XS_INTRODUCE.</summary>
    public const uint XS_INTRODUCE = 8;
    /// <summary>XS_RELEASE.</summary>
    public const uint XS_RELEASE = 9;
    /// <summary>XS_GET_DOMAIN_PATH.</summary>
    public const uint XS_GET_DOMAIN_PATH = 10;
    /// <summary>XS_WRITE.</summary>
    public const uint XS_WRITE = 11;
    /// <summary>XS_MKDIR.</summary>
    public const uint XS_MKDIR = 12;
    /// <summary>XS_RM.</summary>
    public const uint XS_RM = 13;
    /// <summary>XS_SET_PERMS.</summary>
    public const uint XS_SET_PERMS = 14;
    /// <summary>XS_WATCH_EVENT.</summary>
    public const uint XS_WATCH_EVENT = 15;
    /// <summary>XS_ERROR.</summary>
    public const uint XS_ERROR = 16;
    /// <summary>XS_IS_DOMAIN_INTRODUCED.</summary>
    public const uint XS_IS_DOMAIN_INTRODUCED = 17;
    /// <summary>XS_RESUME.</summary>
    public const uint XS_RESUME = 18;
    /// <summary>XS_SET_TARGET.</summary>
    public const uint XS_SET_TARGET = 19;
    /// <summary>XS_RESET_WATCHES (XS_SET_TARGET + 2: XS_RESTRICT was removed).</summary>
    public const uint XS_RESET_WATCHES = 21;
    /// <summary>XS_DIRECTORY_PART.</summary>
    public const uint XS_DIRECTORY_PART = 22;
    /// <summary>XS_TYPE_COUNT: the number of valid types.</summary>
    public const uint XS_TYPE_COUNT = 23;
    /// <summary>XS_INVALID.</summary>
    public const uint XS_INVALID = 0xffff;

    /// <summary>XS_WATCH_PATH: index of the path in a watch event's payload.</summary>
    public const int XS_WATCH_PATH = 0;
    /// <summary>XS_WATCH_TOKEN: index of the token in a watch event's payload.</summary>
    public const int XS_WATCH_TOKEN = 1;

    /// <summary>XENSTORE_PAYLOAD_MAX: the largest payload of one message.</summary>
    public const int XENSTORE_PAYLOAD_MAX = 4096;
    /// <summary>XENSTORE_ABS_PATH_MAX.</summary>
    public const int XENSTORE_ABS_PATH_MAX = 3072;
    /// <summary>XENSTORE_REL_PATH_MAX.</summary>
    public const int XENSTORE_REL_PATH_MAX = 2048;
    /// <summary>XENSTORE_RING_SIZE (the shared-page ring of a guest's connection).</summary>
    public const int XENSTORE_RING_SIZE = 1024;

    /// <summary>The size of <see cref="xsd_sockmsg"/> (16).</summary>
    public static readonly int HeaderSize = System.Runtime.CompilerServices.Unsafe.SizeOf<xsd_sockmsg>();

    /// <summary>The <c>xsd_errors</c> table in its order: the errno names a daemon sends as the payload of
    /// XS_ERROR, with their Linux values.</summary>
    public static IReadOnlyList<(int Errno, string Name)> Errors { get; } =
    [
        (Errno.EINVAL, "EINVAL"), (Errno.EACCES, "EACCES"), (Errno.EEXIST, "EEXIST"), (Errno.EISDIR, "EISDIR"),
        (Errno.ENOENT, "ENOENT"), (Errno.ENOMEM, "ENOMEM"), (Errno.ENOSPC, "ENOSPC"), (Errno.EIO, "EIO"),
        (Errno.ENOTEMPTY, "ENOTEMPTY"), (Errno.ENOSYS, "ENOSYS"), (Errno.EROFS, "EROFS"), (Errno.EBUSY, "EBUSY"),
        (Errno.EAGAIN, "EAGAIN"), (Errno.EISCONN, "EISCONN"), (Errno.E2BIG, "E2BIG"), (Errno.EPERM, "EPERM"),
    ];

    /// <summary>The errno a daemon's error string names; EINVAL for a name outside the table (what Xen's
    /// own client library does).</summary>
    public static int ErrnoOf(ReadOnlySpan<char> name)
    {
        foreach (var (errno, n) in Errors)
            if (name.SequenceEqual(n)) return errno;
        return Errno.EINVAL;
    }

    /// <summary>The error string for an errno; "EINVAL" for one outside the table.</summary>
    public static string NameOf(int errno)
    {
        foreach (var (e, n) in Errors)
            if (e == errno) return n;
        return "EINVAL";
    }
}
