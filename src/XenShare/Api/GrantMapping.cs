using XenShare.Abi;

namespace XenShare.Api;

/// <summary>
/// Foreign grants mapped into the guest process through gntdev (MAP_GRANT_REF + mmap). Disposing unmaps
/// the memory and releases the map.
/// </summary>
public sealed class GrantMapping : IDisposable
{
    private readonly GrantDevice _device;
    private long _address;

    internal GrantMapping(GrantDevice device, ulong index, int count, long address, bool writable)
    {
        _device = device;
        Index = index;
        PageCount = count;
        _address = address;
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

    /// <summary>The address in the guest process.</summary>
    public long Address => _address != 0 ? _address : throw new ObjectDisposedException(nameof(GrantMapping));

    /// <summary>The mapped memory, writable (throws for a read-only mapping).</summary>
    public Span<byte> Span => IsWritable ? GuestMemory.AsSpan(Address, Length) : throw new InvalidOperationException("the mapping is read-only");

    /// <summary>The mapped memory, read-only.</summary>
    public ReadOnlySpan<byte> ReadOnlySpan => GuestMemory.AsSpan(Address, Length);

    /// <summary>IOCTL_GNTDEV_SET_UNMAP_NOTIFY: at the final unmap, zero the byte at
    /// <paramref name="byteOffset"/> and/or send an event on <paramref name="port"/>.</summary>
    public void SetUnmapNotify(int byteOffset, UnmapNotify action, EventPort port = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteOffset);
        var op = new ioctl_gntdev_unmap_notify { index = Index + (ulong)byteOffset, action = (uint)action, event_channel_port = port.Value };
        ErrnoMapper.Check(_device.Process.Ioctl(_device.Fd, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, IoctlArg.Of(ref op)), "IOCTL_GNTDEV_SET_UNMAP_NOTIFY");
    }

    /// <summary>Unmaps and releases the map.</summary>
    public void Dispose()
    {
        long a = Interlocked.Exchange(ref _address, 0);
        if (a == 0) return;
        _device.Process.Munmap(a, Length);
        _device.UnmapGrantRef(Index, PageCount);
    }
}
