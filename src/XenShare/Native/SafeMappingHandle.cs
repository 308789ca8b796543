using System.Runtime.InteropServices;

namespace XenShare.Native;

/// <summary>
/// Owns one memory mapping made by a <see cref="LinuxGuestProcess"/>: the address and its page-rounded
/// length. Releasing it calls munmap(2) for exactly that range.
/// </summary>
internal sealed class SafeMappingHandle : SafeHandle
{
    /// <summary>Takes ownership of <paramref name="length"/> bytes (a multiple of the page size) at
    /// <paramref name="address"/>.</summary>
    public SafeMappingHandle(long address, long length)
        : base(invalidHandleValue: -1, ownsHandle: true)
    {
        SetHandle((nint)address);
        Length = length;
    }

    /// <summary>The first address of the mapping.</summary>
    public long Address => handle;

    /// <summary>The page-rounded length of the mapping.</summary>
    public long Length { get; }

    /// <summary>One past the last address of the mapping.</summary>
    public long End => Address + Length;

    // Address 0 is a valid (if unusual) mapping address; MAP_FAILED is not.
    /// <inheritdoc/>
    public override bool IsInvalid => handle == -1;

    /// <inheritdoc/>
    protected override unsafe bool ReleaseHandle()
    {
        return Interop.Libc.Munmap((void*)handle, (nuint)Length) == 0;
    }
}
