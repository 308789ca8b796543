using XenShare.Abi;

namespace XenShare.Api;

/// <summary>Private, page-aligned memory of the guest process (an anonymous mmap), usable as the local
/// side of grant copies.</summary>
public sealed class ProcessBuffer : IDisposable
{
    private readonly IGuestProcess _process;
    private long _address;

    private ProcessBuffer(IGuestProcess process, long address, int length)
    {
        _process = process;
        _address = address;
        Length = length;
    }

    /// <summary>Maps <paramref name="length"/> bytes (rounded up to pages) of zeroed private memory.</summary>
    public static ProcessBuffer Allocate(IGuestProcess process, int length)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        long a = ErrnoMapper.Check(process.Mmap(-1, 0, length, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS), "mmap(anonymous)");
        return new ProcessBuffer(process, a, length);
    }

    /// <summary>The address in the guest process.</summary>
    public long Address => _address != 0 ? _address : throw new ObjectDisposedException(nameof(ProcessBuffer));

    /// <summary>Length in bytes.</summary>
    public int Length { get; }

    /// <summary>The memory.</summary>
    public Span<byte> Span => GuestMemory.AsSpan(Address, Length);

    /// <summary>Unmaps the memory.</summary>
    public void Dispose()
    {
        long a = Interlocked.Exchange(ref _address, 0);
        if (a != 0) _process.Munmap(a, Length);
    }
}
