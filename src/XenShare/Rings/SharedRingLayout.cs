using System.Runtime.InteropServices;

namespace XenShare.Rings;

/// <summary>
/// The layout of a shared ring of <c>xen/io/ring.h</c> (spec RG01): <c>req_prod</c>, <c>req_event</c>,
/// <c>rsp_prod</c>, <c>rsp_event</c> at offsets 0, 4, 8 and 12, padding to <see cref="HeaderSize"/> bytes,
/// then a power-of-two number of entries of the request/response union's size, as many as fit.
/// </summary>
public static class SharedRingLayout
{
    /// <summary>Offset of <c>req_prod</c>, written by the front end.</summary>
    public const int RequestProducerOffset = 0;
    /// <summary>Offset of <c>req_event</c>, written by the back end.</summary>
    public const int RequestEventOffset = 4;
    /// <summary>Offset of <c>rsp_prod</c>, written by the back end.</summary>
    public const int ResponseProducerOffset = 8;
    /// <summary>Offset of <c>rsp_event</c>, written by the front end.</summary>
    public const int ResponseEventOffset = 12;
    /// <summary>Offset of the first entry (<c>offsetof(sring, ring)</c>).</summary>
    public const int HeaderSize = 64;
    /// <summary>The page size rings are counted in.</summary>
    public const int PageSize = Abi.XenPage.Size;

    /// <summary>
    /// The number of entries of <paramref name="entrySize"/> bytes in a ring of <paramref name="ringBytes"/>
    /// bytes: <c>(ringBytes - 64) / entrySize</c> rounded down to a power of two, as
    /// <c>__CONST_RING_SIZE</c> / <c>__RING_SIZE</c> compute it; 0 when not one entry fits.
    /// </summary>
    /// <param name="ringBytes">The bytes of the shared ring (header and entries), e.g. one page.</param>
    /// <param name="entrySize">The size of the union of request and response (the larger of the two).</param>
    public static int EntryCount(int ringBytes, int entrySize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(entrySize);
        ArgumentOutOfRangeException.ThrowIfNegative(ringBytes);
        if (ringBytes < HeaderSize + entrySize) return 0;
        uint fit = (uint)((ringBytes - HeaderSize) / entrySize);
        return (int)(1u << (31 - System.Numerics.BitOperations.LeadingZeroCount(fit)));
    }

    /// <summary>The byte offset of the entry that free-running <paramref name="index"/> names (spec RG02:
    /// masked by the entry count).</summary>
    /// <param name="index">A free-running 32-bit index.</param>
    /// <param name="entryCount">The ring's entry count (a power of two).</param>
    /// <param name="entrySize">The entry size.</param>
    public static int EntryOffset(uint index, int entryCount, int entrySize)
    {
        if (entryCount <= 0 || (entryCount & (entryCount - 1)) != 0)
            throw new ArgumentOutOfRangeException(nameof(entryCount), entryCount, "the entry count of a ring is a power of two");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(entrySize);
        return HeaderSize + (int)(index & (uint)(entryCount - 1)) * entrySize;
    }

    /// <summary>
    /// <c>SHARED_RING_INIT</c>: both producer indexes 0, both event indexes 1, the private and padding bytes
    /// of the header zeroed. The front end does this before it grants the ring; the entries are left alone.
    /// </summary>
    /// <param name="ring">The ring's memory (at least <see cref="HeaderSize"/> bytes).</param>
    public static void Initialize(Span<byte> ring)
    {
        if (ring.Length < HeaderSize) throw new ArgumentException("a shared ring starts with a 64-byte header", nameof(ring));
        ring[..HeaderSize].Clear();
        MemoryMarshal.Write(ring[RequestEventOffset..], 1u);
        MemoryMarshal.Write(ring[ResponseEventOffset..], 1u);
    }
}
