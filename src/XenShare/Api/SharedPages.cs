using XenShare.Abi;

namespace XenShare.Api;

/// <summary>Local pages granted to a foreign domain through gntalloc and mapped into this process.
/// Disposing (or, when forgotten, the finalizer) unmaps them and deallocates the grefs; access ends once the
/// peer has unmapped too (GA02). After the dispose <c>Memory.Span</c> throws <see cref="ObjectDisposedException"/>
/// (see <see cref="GrantMapping"/> for pinning).</summary>
public sealed class SharedPages : IDisposable
{
    private readonly GrantSharer _sharer;
    private readonly GuestMappingHandle _mapping;
    private readonly MappedMemory _memory;
    private readonly GrantRef[] _refs;

    internal SharedPages(GrantSharer sharer, GuestMappingHandle mapping, ulong index, GrantRef[] refs, bool writable)
    {
        _sharer = sharer;
        _mapping = mapping;
        _memory = new MappedMemory(mapping);
        Index = index;
        _refs = refs;
        IsWritable = writable;
    }

    /// <summary>The mmap offset in the gntalloc file.</summary>
    public ulong Index { get; }

    /// <summary>The grant refs, one per page (a view without a copy).</summary>
    public GrantRefs Refs => new(_refs);

    /// <summary>Whether the peer may write.</summary>
    public bool IsWritable { get; }

    /// <summary>Length in bytes.</summary>
    public int Length => _refs.Length * XenPage.Size;

    /// <summary>Whether the pages were disposed.</summary>
    public bool IsDisposed => _mapping.IsDisposed;

    /// <summary>The address in this process.</summary>
    /// <exception cref="ObjectDisposedException">The pages were disposed.</exception>
    public long Address => _mapping.CheckedAddress;

    /// <summary>The pages (always writable locally).</summary>
    public Memory<byte> Memory => _memory.Memory;

    /// <summary>IOCTL_GNTALLOC_SET_UNMAP_NOTIFY.</summary>
    public void SetUnmapNotify(int byteOffset, UnmapNotify action, EventPort port = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(byteOffset);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var op = new ioctl_gntalloc_unmap_notify { index = Index + (ulong)byteOffset, action = (uint)action, event_channel_port = port.Value };
        ErrnoMapper.Check(_sharer.Handle.Ioctl(GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY, IoctlArg.Of(ref op)), "IOCTL_GNTALLOC_SET_UNMAP_NOTIFY");
    }

    /// <summary>Unmaps and deallocates (once the last pin of <see cref="Memory"/> is released).</summary>
    public void Dispose() => _mapping.Dispose();
}
