namespace XenShare.Abi;

/// <summary>Linux errno values (x86-64 and arm64 agree). Raw syscalls return <c>-errno</c>.</summary>
public static class Errno
{
    /// <summary>Operation not permitted.</summary>
    public const int EPERM = 1;
    /// <summary>No such file or directory / entry.</summary>
    public const int ENOENT = 2;
    /// <summary>No such process (or domain).</summary>
    public const int ESRCH = 3;
    /// <summary>Interrupted system call.</summary>
    public const int EINTR = 4;
    /// <summary>I/O error.</summary>
    public const int EIO = 5;
    /// <summary>No such device or address.</summary>
    public const int ENXIO = 6;
    /// <summary>Argument list too long (xenstore: a reply or value too big).</summary>
    public const int E2BIG = 7;
    /// <summary>Bad file descriptor.</summary>
    public const int EBADF = 9;
    /// <summary>Try again.</summary>
    public const int EAGAIN = 11;
    /// <summary>Out of memory.</summary>
    public const int ENOMEM = 12;
    /// <summary>Permission denied.</summary>
    public const int EACCES = 13;
    /// <summary>Bad address.</summary>
    public const int EFAULT = 14;
    /// <summary>Device or resource busy.</summary>
    public const int EBUSY = 16;
    /// <summary>File exists.</summary>
    public const int EEXIST = 17;
    /// <summary>No such device.</summary>
    public const int ENODEV = 19;
    /// <summary>Is a directory (xenstore).</summary>
    public const int EISDIR = 21;
    /// <summary>Invalid argument.</summary>
    public const int EINVAL = 22;
    /// <summary>Too many open files.</summary>
    public const int EMFILE = 24;
    /// <summary>Inappropriate ioctl for device.</summary>
    public const int ENOTTY = 25;
    /// <summary>No space left on device.</summary>
    public const int ENOSPC = 28;
    /// <summary>File too large (evtchn ring overflow).</summary>
    public const int EFBIG = 27;
    /// <summary>Illegal seek.</summary>
    public const int ESPIPE = 29;
    /// <summary>Read-only file system (xenstore).</summary>
    public const int EROFS = 30;
    /// <summary>Function not implemented.</summary>
    public const int ENOSYS = 38;
    /// <summary>Directory not empty (xenstore).</summary>
    public const int ENOTEMPTY = 39;
    /// <summary>Transport endpoint is already connected (xenstore).</summary>
    public const int EISCONN = 106;
    /// <summary>Transport endpoint is not connected.</summary>
    public const int ENOTCONN = 107;
    /// <summary>Connection timed out.</summary>
    public const int ETIMEDOUT = 110;
    /// <summary>No data available.</summary>
    public const int ENODATA = 61;

    /// <summary>The symbolic name of an errno value ("EINVAL"), or "E?" plus the number.</summary>
    public static string Name(int errno) => errno switch
    {
        EPERM => "EPERM", ENOENT => "ENOENT", ESRCH => "ESRCH", EEXIST => "EEXIST", EFBIG => "EFBIG", EINTR => "EINTR", EIO => "EIO", ENXIO => "ENXIO",
        EBADF => "EBADF", EAGAIN => "EAGAIN", ENOMEM => "ENOMEM", EACCES => "EACCES",
        EFAULT => "EFAULT", EBUSY => "EBUSY", ENODEV => "ENODEV", EINVAL => "EINVAL",
        EMFILE => "EMFILE", ENOTTY => "ENOTTY", ENOSPC => "ENOSPC", ESPIPE => "ESPIPE",
        ENOSYS => "ENOSYS", ENOTCONN => "ENOTCONN", ETIMEDOUT => "ETIMEDOUT",
        E2BIG => "E2BIG", ENODATA => "ENODATA", EISDIR => "EISDIR", EROFS => "EROFS", ENOTEMPTY => "ENOTEMPTY", EISCONN => "EISCONN",
        _ => "E?" + errno.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
