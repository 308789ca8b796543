namespace XenShare.Abi;

/// <summary>
/// The Linux <c>_IOC</c> ioctl number encoder (asm-generic/ioctl.h, used by x86-64 and arm64):
/// <c>dir &lt;&lt; 30 | size &lt;&lt; 16 | type &lt;&lt; 8 | nr</c>. Every ioctl number in XenShare is
/// computed here from the argument struct's size, never typed in.
/// </summary>
public static class Ioc
{
    /// <summary>_IOC_NONE: no data transfer direction.</summary>
    public const uint None = 0;
    /// <summary>_IOC_WRITE: user space writes the argument to the kernel.</summary>
    public const uint Write = 1;
    /// <summary>_IOC_READ: the kernel writes the argument back to user space.</summary>
    public const uint Read = 2;

    /// <summary>Encodes an ioctl number.</summary>
    /// <param name="dir">Direction bits (<see cref="None"/>, <see cref="Write"/>, <see cref="Read"/>).</param>
    /// <param name="type">The driver's magic character ('G', 'E', 'b').</param>
    /// <param name="nr">The command number within the driver.</param>
    /// <param name="size">The argument size in bytes (14 bits).</param>
    public static uint Encode(uint dir, char type, uint nr, int size)
    {
        if ((uint)size >= (1u << 14)) throw new ArgumentOutOfRangeException(nameof(size));
        ArgumentOutOfRangeException.ThrowIfGreaterThan(dir, 3u);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(nr, 0xffu);
        return (dir << 30) | ((uint)size << 16) | ((uint)(byte)type << 8) | nr;
    }

    /// <summary>The direction field of an ioctl number.</summary>
    public static uint DirOf(uint request) => request >> 30;

    /// <summary>The size field of an ioctl number.</summary>
    public static int SizeOf(uint request) => (int)((request >> 16) & 0x3fff);

    /// <summary>The type (magic) field of an ioctl number.</summary>
    public static char TypeOf(uint request) => (char)((request >> 8) & 0xff);

    /// <summary>The command number field of an ioctl number.</summary>
    public static uint NrOf(uint request) => request & 0xff;
}
