namespace XenShare;

/// <summary>Access to memory mapped through <see cref="IGuestProcess.Mmap"/>.</summary>
public static class GuestMemory
{
    /// <summary>A span over <paramref name="length"/> bytes at a mapped address. The caller guarantees
    /// the range is mapped (and writable if written through) for as long as the span is used.</summary>
    public static unsafe Span<byte> AsSpan(long address, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(address);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        return new Span<byte>((void*)address, length);
    }
}
