using XenShare.Abi;

namespace XenShare.Api;

/// <summary>Private, page-aligned memory of the guest process (an anonymous mmap), usable as the local side of
/// grant copies. Disposing (or, when forgotten, the finalizer) unmaps it; after that <c>Memory.Span</c> throws
/// <see cref="ObjectDisposedException"/> (see <see cref="GrantMapping"/> for pinning).</summary>
public sealed class ProcessBuffer : IDisposable
{
    private readonly GuestMappingHandle _mapping;
    private readonly MappedMemory _memory;

    private ProcessBuffer(GuestMappingHandle mapping)
    {
        _mapping = mapping;
        _memory = new MappedMemory(mapping);
    }

    /// <summary>Maps <paramref name="length"/> bytes (rounded up to pages) of zeroed private memory.</summary>
    public static ProcessBuffer Allocate(IGuestProcess process, int length)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        long a = ErrnoMapper.Check(process.Mmap(-1, 0, length, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS), "mmap(anonymous)");
        return new ProcessBuffer(new GuestMappingHandle(process, a, length, nameof(ProcessBuffer)));
    }

    /// <summary>The address in the guest process.</summary>
    /// <exception cref="ObjectDisposedException">The buffer was disposed.</exception>
    public long Address => _mapping.CheckedAddress;

    /// <summary>Length in bytes.</summary>
    public int Length => _mapping.Length;

    /// <summary>Whether the buffer was disposed.</summary>
    public bool IsDisposed => _mapping.IsDisposed;

    /// <summary>The memory.</summary>
    public Memory<byte> Memory => _memory.Memory;

    /// <summary>Unmaps the memory (once the last pin of <see cref="Memory"/> is released).</summary>
    public void Dispose() => _mapping.Dispose();
}
