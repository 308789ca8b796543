using XenShare.Abi;

namespace XenShare.Api;

/// <summary>Local pages granted to a foreign domain through gntalloc and mapped into this process.
/// Disposing unmaps them and deallocates the grefs; access ends once the peer has unmapped too (GA02).</summary>
public sealed class SharedPages : IDisposable
{
    private readonly GrantSharer _sharer;
    private readonly GrantRef[] _refs;
    private long _address;
    private bool _deallocated;

    internal SharedPages(GrantSharer sharer, ulong index, GrantRef[] refs, long address, bool writable, bool deallocated)
    {
        _sharer = sharer;
        Index = index;
        _refs = refs;
        _address = address;
        IsWritable = writable;
        _deallocated = deallocated;
    }

    /// <summary>The mmap offset in the gntalloc file.</summary>
    public ulong Index { get; }

    /// <summary>The grant refs, one per page.</summary>
    public IReadOnlyList<GrantRef> Refs => _refs;

    /// <summary>Whether the peer may write.</summary>
    public bool IsWritable { get; }

    /// <summary>Length in bytes.</summary>
    public int Length => _refs.Length * XenPage.Size;

    /// <summary>The address in this process.</summary>
    public long Address => _address != 0 ? _address : throw new ObjectDisposedException(nameof(SharedPages));

    /// <summary>The pages (always writable locally).</summary>
    public Span<byte> Span => GuestMemory.AsSpan(Address, Length);

    /// <summary>IOCTL_GNTALLOC_SET_UNMAP_NOTIFY.</summary>
    public void SetUnmapNotify(int byteOffset, UnmapNotify action, EventPort port = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteOffset);
        var op = new ioctl_gntalloc_unmap_notify { index = Index + (ulong)byteOffset, action = (uint)action, event_channel_port = port.Value };
        ErrnoMapper.Check(_sharer.Process.Ioctl(_sharer.Fd, GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, IoctlArg.Of(ref op)), "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY");
    }

    /// <summary>Unmaps and deallocates.</summary>
    public void Dispose()
    {
        long a = Interlocked.Exchange(ref _address, 0);
        if (a == 0) return;
        _sharer.Process.Munmap(a, Length);
        if (!_deallocated) _sharer.Dealloc(Index, _refs.Length);
        _deallocated = true;
    }
}
