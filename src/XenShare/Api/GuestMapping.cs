using System.Buffers;
using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Api;

/// <summary>What must follow the munmap of a typed-API mapping, on the fd it was mapped from.</summary>
internal enum AfterUnmap
{
    /// <summary>Nothing (anonymous memory, or gntalloc pages deallocated right after mmap).</summary>
    None,

    /// <summary>IOCTL_GNTDEV_UNMAP_GRANT_REF for the map's index and page count.</summary>
    GntDevUnmapGrantRef,

    /// <summary>IOCTL_GNTALLOC_DEALLOC_GREF for the pages' index and count.</summary>
    GntAllocDealloc,
}

/// <summary>
/// Owns one mapping the typed API made in an <see cref="IGuestProcess"/> (grants mapped through gntdev, pages
/// shared through gntalloc, anonymous memory). Releasing it munmaps exactly that range once and then does what
/// the device needs (<see cref="AfterUnmap"/>) on the device's fd, which it keeps open through a reference on
/// the device's <see cref="GuestFdHandle"/> until then. Released by <see cref="SafeHandle.Dispose()"/>, or by
/// the finalizer when the owner was forgotten. Pins of <see cref="MappedMemory"/> count as references, so a
/// pinned mapping is unmapped only when the last pin is released.
/// </summary>
internal sealed class GuestMappingHandle : SafeHandle
{
    private readonly GuestFdHandle? _device;
    private readonly AfterUnmap _after;
    private readonly ulong _index;
    private readonly int _pages;
    private int _disposed;

    /// <summary>Takes ownership of <paramref name="length"/> bytes at <paramref name="address"/>. A
    /// <paramref name="device"/> must already carry a reference taken for this handle
    /// (<see cref="GuestFdHandle.TryAddRef"/>); it is dropped after the release.</summary>
    internal GuestMappingHandle(IGuestProcess process, long address, int length, string owner,
        GuestFdHandle? device = null, AfterUnmap after = AfterUnmap.None, ulong index = 0, int pages = 0)
        : base(invalidHandleValue: 0, ownsHandle: true)
    {
        Process = process;
        Length = length;
        Owner = owner;
        _device = device;
        _after = after;
        _index = index;
        _pages = pages;
        SetHandle((nint)address);
    }

    /// <summary>The process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The mapping's address (meaningful while open).</summary>
    public long Address => handle;

    /// <summary>The mapping's length in bytes.</summary>
    public int Length { get; }

    /// <summary>The owning type's name, for <see cref="ObjectDisposedException"/>.</summary>
    public string Owner { get; }

    /// <inheritdoc/>
    public override bool IsInvalid => handle == 0;

    /// <summary>Whether the mapping was disposed (or finalized); it is unmapped once the last pin is released.</summary>
    public bool IsDisposed => Volatile.Read(ref _disposed) != 0 || IsClosed;

    /// <summary>The address, or <see cref="ObjectDisposedException"/> once disposed.</summary>
    public long CheckedAddress
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, Owner);
            return handle;
        }
    }

    /// <summary>Adds a user (a pin) unless disposed.</summary>
    public bool TryAddRef() => SafeHandleRefs.TryAddRef(this, ref _disposed);

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
            Process.Munmap(handle, Length);
            if (_device is not null && _after != AfterUnmap.None) Undo(_device.Number);
        }
        catch (ObjectDisposedException)
        {
            // The process object was disposed first and unmapped everything itself.
        }
        finally
        {
            _device?.DangerousRelease();
        }
        return true;
    }

    private void Undo(int fd)
    {
        if (_after == AfterUnmap.GntDevUnmapGrantRef)
        {
            var op = new ioctl_gntdev_unmap_grant_ref { index = _index, count = (uint)_pages };
            Process.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, IoctlArg.Of(ref op));
        }
        else
        {
            var op = new ioctl_gntalloc_dealloc_gref { index = _index, count = (uint)_pages };
            Process.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, IoctlArg.Of(ref op));
        }
    }
}

/// <summary>
/// The <see cref="Memory{T}"/> of a typed-API mapping. Every <see cref="GetSpan"/> (so every
/// <c>Memory.Span</c>) checks that the mapping is still mapped and throws <see cref="ObjectDisposedException"/>
/// once its owner was disposed, instead of handing out a span over unmapped memory. A span obtained before the
/// dispose must not be used after it; code that may race with a dispose on another thread pins the memory
/// (<c>using var pin = memory.Pin();</c>): each pin is a user of the mapping, and the munmap waits for the last.
/// </summary>
internal sealed unsafe class MappedMemory : MemoryManager<byte>
{
    private readonly GuestMappingHandle _mapping;

    internal MappedMemory(GuestMappingHandle mapping) => _mapping = mapping;

    /// <inheritdoc/>
    public override Span<byte> GetSpan() => new((void*)_mapping.CheckedAddress, _mapping.Length);

    /// <inheritdoc/>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(elementIndex);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(elementIndex, _mapping.Length);
        ObjectDisposedException.ThrowIf(!_mapping.TryAddRef(), _mapping.Owner);
        return new MemoryHandle((byte*)_mapping.Address + elementIndex, default, this);
    }

    /// <inheritdoc/>
    public override void Unpin() => _mapping.DangerousRelease();

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        // The owner (GrantMapping, SharedPages, ProcessBuffer) disposes the mapping handle.
    }
}
