using XenShare.Abi;

namespace XenShare.Api;

/// <summary>
/// Foreign grants mapped into the guest process through gntdev (MAP_GRANT_REF + mmap). Disposing unmaps the
/// memory and releases the map; a mapping that is forgotten is unmapped and released by its finalizer.
/// </summary>
/// <remarks>
/// The memory is reached through <see cref="Memory"/> / <see cref="ReadOnlyMemory"/>: once the mapping is
/// disposed, <c>Memory.Span</c> throws <see cref="ObjectDisposedException"/> instead of touching unmapped memory.
/// Code that may race with a dispose on another thread pins the memory for as long as it uses a span
/// (<c>using var pin = mapping.Memory.Pin();</c>); the munmap waits for the last pin.
/// </remarks>
public sealed class GrantMapping : IDisposable
{
    private readonly GrantDevice _device;
    private readonly GuestMappingHandle _mapping;
    private readonly MappedMemory _memory;

    internal GrantMapping(GrantDevice device, GuestMappingHandle mapping, ulong index, int count, bool writable)
    {
        _device = device;
        _mapping = mapping;
        _memory = new MappedMemory(mapping);
        Index = index;
        PageCount = count;
        IsWritable = writable;
    }

    /// <summary>The map's mmap offset in the gntdev file.</summary>
    public ulong Index { get; }

    /// <summary>Number of pages.</summary>
    public int PageCount { get; }

    /// <summary>Length in bytes.</summary>
    public int Length => PageCount * XenPage.Size;

    /// <summary>Whether the mapping is writable.</summary>
    public bool IsWritable { get; }

    /// <summary>Whether the mapping was disposed.</summary>
    public bool IsDisposed => _mapping.IsDisposed;

    /// <summary>The address in the guest process (for grant-copy operands and the raw seam).</summary>
    /// <exception cref="ObjectDisposedException">The mapping was disposed.</exception>
    public long Address => _mapping.CheckedAddress;

    /// <summary>The mapped memory, writable.</summary>
    /// <exception cref="InvalidOperationException">The mapping is read-only (writing would fault).</exception>
    public Memory<byte> Memory => IsWritable ? _memory.Memory : throw new InvalidOperationException("the mapping is read-only");

    /// <summary>The mapped memory, read-only.</summary>
    public ReadOnlyMemory<byte> ReadOnlyMemory => _memory.Memory;

    /// <summary>IOCTL_GNTDEV_SET_UNMAP_NOTIFY: at the final unmap, zero the byte at
    /// <paramref name="byteOffset"/> and/or send an event on <paramref name="port"/>.</summary>
    public void SetUnmapNotify(int byteOffset, UnmapNotify action, EventPort port = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteOffset);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var op = new ioctl_gntdev_unmap_notify { index = Index + (ulong)byteOffset, action = (uint)action, event_channel_port = port.Value };
        ErrnoMapper.Check(_device.Handle.Ioctl(GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, IoctlArg.Of(ref op)), "IOCTL_GNTDEV_SET_UNMAP_NOTIFY");
    }

    /// <summary>Unmaps and releases the map (once the last pin of <see cref="Memory"/> is released).</summary>
    public void Dispose() => _mapping.Dispose();
}
