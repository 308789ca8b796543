using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Api;

/// <summary>A pooled argument buffer for a variable-size ioctl (header struct + u32/struct array).</summary>
internal ref struct IoctlArg
{
    private byte[]? _rented;

    public IoctlArg(int size, Span<byte> stackBuffer)
    {
        if (size <= stackBuffer.Length) { Bytes = stackBuffer[..size]; _rented = null; }
        else { _rented = ArrayPool<byte>.Shared.Rent(size); Bytes = _rented.AsSpan(0, size); }
        Bytes.Clear();
    }

    public Span<byte> Bytes { get; }

    public ref T Header<T>() where T : unmanaged => ref MemoryMarshal.AsRef<T>(Bytes);

    public Span<T> Array<T>(int offset, int count) where T : unmanaged =>
        MemoryMarshal.Cast<byte, T>(Bytes.Slice(offset, count * Unsafe.SizeOf<T>()));

    public void Dispose()
    {
        if (_rented is not null) ArrayPool<byte>.Shared.Return(_rented);
        _rented = null;
    }
}
