using System.Runtime.InteropServices;

namespace XenShare.Native;

/// <summary>
/// Owns one file descriptor opened or duplicated by a <see cref="LinuxGuestProcess"/>; releasing it
/// calls close(2) once. The process drops ownership with <see cref="SafeHandle.SetHandleAsInvalid"/>
/// when the caller closes the fd itself (so that the number is never closed twice).
/// </summary>
internal sealed class SafeFdHandle : SafeHandle
{
    /// <summary>Takes ownership of <paramref name="fd"/>.</summary>
    public SafeFdHandle(int fd)
        : base(invalidHandleValue: -1, ownsHandle: true)
    {
        SetHandle(fd);
    }

    /// <summary>The fd number.</summary>
    public int Fd => (int)handle;

    /// <inheritdoc/>
    public override bool IsInvalid => (int)handle < 0;

    /// <inheritdoc/>
    protected override bool ReleaseHandle()
    {
        // Never retried on EINTR: Linux has released the number even then.
        return Interop.Libc.Close((int)handle) == 0;
    }
}
