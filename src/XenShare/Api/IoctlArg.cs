using System.Buffers;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Api;

/// <summary>
/// The one encoder of ioctl arguments in the typed API. A fixed-size argument is its struct's own bytes
/// (<see cref="Of{T}"/>: what the kernel writes back lands in the struct), or a copy of them for an
/// asynchronous ioctl whose argument outlives the call (<see cref="ToArray{T}"/>). A variable-size argument
/// (a header struct followed by an array, as MAP_GRANT_REF, ALLOC_GREF and the dma-buf ioctls take) is a
/// zeroed buffer from the stack or the pool (<see cref="WithArray{THeader, TItem}"/>, or the constructor),
/// read back through <see cref="Header{T}"/> and <see cref="Array{T}"/>.
/// </summary>
internal ref struct IoctlArg
{
    private byte[]? _rented;

    /// <summary>A zeroed argument of <paramref name="size"/> bytes: <paramref name="stackBuffer"/> when it
    /// is large enough, else a pooled array (given back by <see cref="Dispose"/>).</summary>
    public IoctlArg(int size, Span<byte> stackBuffer)
    {
        if (size <= stackBuffer.Length) { Bytes = stackBuffer[..size]; _rented = null; }
        else { _rented = ArrayPool<byte>.Shared.Rent(size); Bytes = _rented.AsSpan(0, size); }
        Bytes.Clear();
    }

    /// <summary>The argument's bytes, as passed to the ioctl.</summary>
    public Span<byte> Bytes { get; }

    /// <summary>A fixed-size argument: the bytes of <paramref name="value"/> itself, so the kernel's
    /// results are read from the struct after the call.</summary>
    public static Span<byte> Of<T>(ref T value) where T : unmanaged =>
        MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1));

    /// <summary>A fixed-size argument copied to the heap, for an asynchronous ioctl (the argument must
    /// outlive the call).</summary>
    public static byte[] ToArray<T>(in T value) where T : unmanaged
    {
        var bytes = new byte[Unsafe.SizeOf<T>()];
        MemoryMarshal.Write(bytes, in value);
        return bytes;
    }

    /// <summary>A header struct followed by <paramref name="count"/> items at <paramref name="arrayOffset"/>:
    /// sized to the larger of the struct (which counts one item, as the C structs do) and the array's end,
    /// zeroed, with <paramref name="header"/> written at the start.</summary>
    public static IoctlArg WithArray<THeader, TItem>(in THeader header, int arrayOffset, int count, Span<byte> stackBuffer)
        where THeader : unmanaged where TItem : unmanaged
    {
        var arg = new IoctlArg(Math.Max(Unsafe.SizeOf<THeader>(), arrayOffset + count * Unsafe.SizeOf<TItem>()), stackBuffer);
        MemoryMarshal.Write(arg.Bytes, in header);
        return arg;
    }

    /// <summary>The header struct at the start of the argument.</summary>
    public readonly ref T Header<T>() where T : unmanaged => ref MemoryMarshal.AsRef<T>(Bytes);

    /// <summary>The <paramref name="count"/> items at <paramref name="offset"/>.</summary>
    public readonly Span<T> Array<T>(int offset, int count) where T : unmanaged =>
        MemoryMarshal.Cast<byte, T>(Bytes.Slice(offset, count * Unsafe.SizeOf<T>()));

    /// <summary>Returns a pooled buffer.</summary>
    public void Dispose()
    {
        if (_rented is not null) ArrayPool<byte>.Shared.Return(_rented);
        _rented = null;
    }
}
