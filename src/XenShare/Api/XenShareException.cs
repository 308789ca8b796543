using XenShare.Abi;

namespace XenShare.Api;

/// <summary>A system call on the guest-process seam failed; <see cref="Errno"/> carries the kernel's errno
/// unchanged (D05).</summary>
public class XenShareException : IOException
{
    /// <summary>Creates an exception for an errno.</summary>
    public XenShareException(int errno, string operation)
        : base($"{operation} failed: {Abi.Errno.Name(errno)} ({errno})")
    {
        Errno = errno;
        Operation = operation;
    }

    /// <summary>Creates an exception with a message.</summary>
    public XenShareException() : this(0, "operation") { }

    /// <summary>Creates an exception with a message.</summary>
    public XenShareException(string message) : base(message) { Operation = "operation"; }

    /// <summary>Creates an exception with a message and an inner exception.</summary>
    public XenShareException(string message, Exception innerException) : base(message, innerException) { Operation = "operation"; }

    /// <summary>The errno value (positive), for example <see cref="Errno.EINVAL"/>.</summary>
    public int Errno { get; }

    /// <summary>What was attempted ("IOCTL_GNTDEV_MAP_GRANT_REF").</summary>
    public string Operation { get; }
}
