using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Rings;

/// <summary>
/// What the two ends of a one-way event page have in common (displif's <c>struct xendispl_event_page</c>,
/// spec DP02): <c>in_cons</c> at offset 0 (written by the consumer, the front end), <c>in_prod</c> at
/// offset 4 (written by the producer, the back end), then <see cref="EntryCount"/> events of
/// <see cref="EntrySize"/> bytes from <see cref="RingOffset"/>. Indexes are free-running 32-bit counters;
/// an index names the slot <c>index % EntryCount</c>, as <c>XENDISPL_IN_RING_REF</c> computes it (the count
/// need not be a power of two: displif has 63).
/// </summary>
/// <remarks>Not thread-safe: one thread drives one end. The peer's index is read once per check and a
/// value more than <see cref="EntryCount"/> away is a protocol error (RG04).</remarks>
public abstract class EventPageRing
{
    /// <summary>Offset of <c>in_cons</c>.</summary>
    public const int ConsumerOffset = 0;
    /// <summary>Offset of <c>in_prod</c>.</summary>
    public const int ProducerOffset = 4;

    private readonly nint _address;
    private string? _fault;

    /// <summary>Attaches to an event page.</summary>
    /// <param name="address">The page's first byte; mapped and writable while this object is used.</param>
    /// <param name="length">The page's bytes.</param>
    /// <param name="ringOffset">Where the events start (at least 8).</param>
    /// <param name="entrySize">The size of one event.</param>
    private protected EventPageRing(long address, int length, int ringOffset, int entrySize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(address);
        ArgumentOutOfRangeException.ThrowIfLessThan(ringOffset, ProducerOffset + 4);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(entrySize);
        ArgumentOutOfRangeException.ThrowIfLessThan(length, ringOffset + entrySize);
        _address = (nint)address;
        Length = length;
        RingOffset = ringOffset;
        EntrySize = entrySize;
        EntryCount = (length - ringOffset) / entrySize;
    }

    /// <summary>The layout of displif's event page: <see cref="Abi.Displif.XENDISPL_EVENT_PAGE_SIZE"/> bytes,
    /// events of <c>sizeof(struct xendispl_evt)</c> from <see cref="Abi.Displif.XENDISPL_IN_RING_OFFS"/>,
    /// <see cref="Abi.Displif.XENDISPL_IN_RING_LEN"/> of them.</summary>
    public static (int Length, int RingOffset, int EntrySize) DisplifLayout =>
        (Abi.Displif.XENDISPL_EVENT_PAGE_SIZE, Abi.Displif.XENDISPL_IN_RING_OFFS, Unsafe.SizeOf<xendispl_evt>());

    /// <summary>The page's first byte.</summary>
    public long Address => _address;

    /// <summary>The page's bytes.</summary>
    public int Length { get; }

    /// <summary>Where the events start.</summary>
    public int RingOffset { get; }

    /// <summary>The size of one event.</summary>
    public int EntrySize { get; }

    /// <summary>The number of event slots (<c>XENDISPL_IN_RING_LEN</c> for displif).</summary>
    public int EntryCount { get; }

    /// <summary>True once the peer broke the protocol (RG04); every later operation throws
    /// <see cref="RingProtocolException"/>.</summary>
    public bool IsFaulted => _fault is not null;

    private protected unsafe ref uint InCons => ref Unsafe.AsRef<uint>((void*)(_address + ConsumerOffset));
    private protected unsafe ref uint InProd => ref Unsafe.AsRef<uint>((void*)(_address + ProducerOffset));

    /// <summary>The slot of free-running <paramref name="index"/>.</summary>
    private protected unsafe Span<byte> Entry(uint index) =>
        new((void*)(_address + RingOffset + (int)(index % (uint)EntryCount) * EntrySize), EntrySize);

    private protected void ThrowIfFaulted()
    {
        if (_fault is not null) throw new RingProtocolException(_fault);
    }

    private protected void Fault(string message)
    {
        _fault ??= message;
        throw new RingProtocolException(message);
    }

    private protected void CheckSize<T>() where T : unmanaged
    {
        if (Unsafe.SizeOf<T>() > EntrySize)
            throw new ArgumentException(string.Format(CultureInfo.InvariantCulture,
                "{0} ({1} bytes) is larger than an event ({2} bytes)", typeof(T).Name, Unsafe.SizeOf<T>(), EntrySize));
    }

    private protected static T Read<T>(Span<byte> slot) where T : unmanaged => MemoryMarshal.Read<T>(slot);

    private protected static string Hex(uint value) => "0x" + value.ToString("x8", CultureInfo.InvariantCulture);
}
