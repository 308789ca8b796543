using System.Runtime.InteropServices;

namespace XenShare.Api;

/// <summary>
/// Owns one file descriptor of an <see cref="IGuestProcess"/> that the typed API opened (a device, a dma-buf):
/// releasing it calls <see cref="IGuestProcess.Close"/> exactly once, from <see cref="SafeHandle.Dispose()"/> or,
/// when the owner was forgotten, from the finalizer. Every system call the typed API makes on the fd holds a
/// reference (<see cref="SafeHandle.DangerousAddRef"/>) for its duration, so a concurrent dispose closes the fd
/// only after the call has returned and never lets the number be reused under a call in flight.
/// </summary>
public sealed class GuestFdHandle : SafeHandle
{
    private readonly string _owner;
    private int _disposed;

    internal GuestFdHandle(IGuestProcess process, int fd, string owner)
        : base(invalidHandleValue: -1, ownsHandle: true)
    {
        Process = process;
        _owner = owner;
        SetHandle(fd);
    }

    /// <summary>The process the fd belongs to.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The fd number while the handle is open.</summary>
    /// <exception cref="ObjectDisposedException">The handle was disposed.</exception>
    public int Fd
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, _owner);
            return (int)handle;
        }
    }

    /// <summary>Whether the handle was disposed (or finalized). The fd itself is closed when the last reference
    /// taken by a call in flight or a mapping made through it is dropped; from the dispose on, new calls fail with
    /// <see cref="ObjectDisposedException"/>.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0 || IsClosed;

    /// <summary>The fd number kept after close (the key of an exported dma-buf's wait).</summary>
    internal int Number => (int)handle;

    /// <inheritdoc/>
    public override bool IsInvalid => (int)handle < 0;

    /// <summary>Takes a reference for one system call; disposing the lease drops it.</summary>
    /// <exception cref="ObjectDisposedException">The handle was disposed.</exception>
    internal FdLease Lease()
    {
        ObjectDisposedException.ThrowIf(!TryAddRef(), _owner);
        return new FdLease(this, (int)handle);
    }

    /// <summary>One ioctl on the fd with a reference held for its duration.</summary>
    /// <exception cref="ObjectDisposedException">The handle was disposed.</exception>
    internal int Ioctl(uint request, Span<byte> arg)
    {
        using var fd = Lease();
        return Process.Ioctl(fd.Fd, request, arg);
    }

    /// <summary>One ioctl unless the handle is disposed: null then (closing the device released what the ioctl
    /// would have released).</summary>
    internal int? IoctlIfOpen(uint request, Span<byte> arg)
    {
        if (!TryAddRef()) return null;
        try
        {
            return Process.Ioctl((int)handle, request, arg);
        }
        finally
        {
            DangerousRelease();
        }
    }

    /// <summary>Takes a reference unless the handle is disposed; false when disposed.</summary>
    internal bool TryAddRef() => SafeHandleRefs.TryAddRef(this, ref _disposed);

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        Interlocked.Exchange(ref _disposed, 1);
        base.Dispose(disposing);
    }

    /// <inheritdoc/>
    protected override bool ReleaseHandle()
    {
        try
        {
            // -EBADF after the process has exited (it closed every fd) is fine: the fd is gone either way.
            Process.Close((int)handle);
        }
        catch (ObjectDisposedException)
        {
            // The process object was disposed first (it closed the fd itself); a finalizer must not throw.
        }
        return true;
    }
}

/// <summary>References on the typed API's handles that respect their own disposed flag: SafeHandle itself refuses
/// new references only once the handle is closed, which it is not while an older reference is held.</summary>
internal static class SafeHandleRefs
{
    /// <summary>Adds a reference unless <paramref name="disposed"/> is set (before or right after the add).</summary>
    public static bool TryAddRef(SafeHandle handle, ref int disposed)
    {
        if (Volatile.Read(ref disposed) != 0) return false;
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
        if (!added) return false;
        if (Volatile.Read(ref disposed) != 0)
        {
            handle.DangerousRelease();
            return false;
        }
        return true;
    }
}

/// <summary>A reference on a <see cref="GuestFdHandle"/> for the duration of one system call.</summary>
internal readonly ref struct FdLease : IDisposable
{
    private readonly GuestFdHandle _handle;

    internal FdLease(GuestFdHandle handle, int fd)
    {
        _handle = handle;
        Fd = fd;
    }

    /// <summary>The fd number, valid until the lease is disposed.</summary>
    public int Fd { get; }

    /// <summary>Drops the reference.</summary>
    public void Dispose() => _handle.DangerousRelease();
}
