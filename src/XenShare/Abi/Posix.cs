namespace XenShare.Abi;

/// <summary>POSIX/Linux constants used on the guest-process seam (Linux generic values, x86-64 and arm64).</summary>
public static class Posix
{
    /// <summary>O_RDONLY.</summary>
    public const int O_RDONLY = 0;
    /// <summary>O_WRONLY.</summary>
    public const int O_WRONLY = 1;
    /// <summary>O_RDWR.</summary>
    public const int O_RDWR = 2;
    /// <summary>O_NONBLOCK.</summary>
    public const int O_NONBLOCK = 0x800;
    /// <summary>O_CLOEXEC.</summary>
    public const int O_CLOEXEC = 0x80000;
    /// <summary>PROT_NONE.</summary>
    public const int PROT_NONE = 0;
    /// <summary>PROT_READ.</summary>
    public const int PROT_READ = 1;
    /// <summary>PROT_WRITE.</summary>
    public const int PROT_WRITE = 2;
    /// <summary>MAP_SHARED.</summary>
    public const int MAP_SHARED = 0x01;
    /// <summary>MAP_PRIVATE.</summary>
    public const int MAP_PRIVATE = 0x02;
    /// <summary>MAP_FIXED.</summary>
    public const int MAP_FIXED = 0x10;
    /// <summary>MAP_ANONYMOUS.</summary>
    public const int MAP_ANONYMOUS = 0x20;
    /// <summary>SEEK_SET.</summary>
    public const int SEEK_SET = 0;
    /// <summary>SEEK_CUR.</summary>
    public const int SEEK_CUR = 1;
    /// <summary>SEEK_END.</summary>
    public const int SEEK_END = 2;
    /// <summary>POLLIN.</summary>
    public const short POLLIN = 0x001;
    /// <summary>POLLOUT.</summary>
    public const short POLLOUT = 0x004;
    /// <summary>POLLERR.</summary>
    public const short POLLERR = 0x008;
    /// <summary>POLLHUP.</summary>
    public const short POLLHUP = 0x010;
    /// <summary>POLLNVAL.</summary>
    public const short POLLNVAL = 0x020;
    /// <summary>POLLRDNORM (Linux's generic value).</summary>
    public const short POLLRDNORM = 0x040;
    /// <summary>FD_CLOEXEC as reported by the emulator's fd flags.</summary>
    public const int FD_CLOEXEC = 1;
}
