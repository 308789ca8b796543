using System.Runtime.InteropServices;

namespace XenShare.Rings;

/// <summary>
/// The producer of an event page (displif's back end, which writes <c>XENDISPL_EVT_PG_FLIP</c> events):
/// writes the event into slot <c>in_prod % EntryCount</c>, then publishes <c>in_prod + 1</c> (release: the
/// event before the index). The caller notifies the event channel after a write.
/// </summary>
/// <remarks>
/// The producer index is private (read from the page once, when attaching); <c>in_cons</c> is read once
/// per write and must lie within <see cref="EventPageRing.EntryCount"/> behind it, or the write throws
/// <see cref="RingProtocolException"/> (RG04). Because the slot is <c>index % EntryCount</c> and 2^32 is
/// not a multiple of a count such as 63, indexes on both sides of the 2^32 wrap can name the same slot:
/// while the unconsumed events straddle the wrap, a write that would land on a slot still holding an
/// unconsumed event reports the ring full instead of overwriting it.
/// </remarks>
public sealed class EventPageProducer : EventPageRing
{
    private uint _prod;

    /// <summary>Attaches to an event page; the producer index starts at the page's <c>in_prod</c>.</summary>
    /// <param name="address">The page's first byte; mapped and writable while this object is used.</param>
    /// <param name="length">The page's bytes.</param>
    /// <param name="ringOffset">Where the events start (at least 8).</param>
    /// <param name="entrySize">The size of one event.</param>
    public EventPageProducer(long address, int length, int ringOffset, int entrySize)
        : base(address, length, ringOffset, entrySize)
    {
        _prod = Volatile.Read(ref InProd);
    }

    /// <summary>Attaches to displif's event page (<see cref="EventPageRing.DisplifLayout"/>).</summary>
    /// <param name="address">The page's first byte (4096 bytes, mapped and writable).</param>
    public static EventPageProducer ForDisplif(long address)
    {
        var (length, offset, size) = DisplifLayout;
        return new EventPageProducer(address, length, offset, size);
    }

    /// <summary>The private <c>in_prod</c>: the index of the next event.</summary>
    public uint Producer => _prod;

    /// <summary>The events written and not yet consumed. Reads <c>in_cons</c> once.</summary>
    /// <exception cref="RingProtocolException">RG04: <c>in_cons</c> is ahead of the producer or more than
    /// <see cref="EventPageRing.EntryCount"/> behind it; the ring is faulted.</exception>
    public int Unconsumed() => Check(Volatile.Read(ref InCons));

    /// <summary>Writes one event (the rest of the slot zeroed) and publishes it; false when the ring is full.</summary>
    /// <param name="evt">The event, at most <see cref="EventPageRing.EntrySize"/> bytes.</param>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="Unconsumed"/>).</exception>
    public bool TryWrite(ReadOnlySpan<byte> evt)
    {
        if (evt.Length > EntrySize) throw new ArgumentException("the event is larger than a slot", nameof(evt));
        if (!HasRoom()) return false;
        Span<byte> slot = Entry(_prod);
        evt.CopyTo(slot);
        slot[evt.Length..].Clear();
        Publish();
        return true;
    }

    /// <summary>Writes one event struct (the rest of the slot zeroed) and publishes it; false when the ring is full.</summary>
    /// <typeparam name="T">The event struct (<see cref="Abi.xendispl_evt"/> for displif).</typeparam>
    /// <param name="evt">The event.</param>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="Unconsumed"/>).</exception>
    public bool TryWrite<T>(in T evt) where T : unmanaged
    {
        CheckSize<T>();
        return TryWrite(MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in evt)));
    }

    private bool HasRoom()
    {
        ThrowIfFaulted();
        uint cons = Volatile.Read(ref InCons);
        int pending = Check(cons);
        if (pending >= EntryCount) return false;
        if (pending > 0 && cons > _prod)
        {
            // The unconsumed events straddle the 2^32 wrap: their slots are not contiguous there.
            uint target = _prod % (uint)EntryCount;
            for (uint i = cons; i != _prod; i++)
            {
                if (i % (uint)EntryCount == target) return false;
            }
        }

        return true;
    }

    private void Publish()
    {
        _prod++;
        Volatile.Write(ref InProd, _prod);   // wmb: the event before the index (release)
    }

    private int Check(uint cons)
    {
        ThrowIfFaulted();
        uint pending = _prod - cons;
        if (pending > (uint)EntryCount)
            Fault($"in_cons {Hex(cons)} is not within {EntryCount} events behind in_prod {Hex(_prod)}");
        return (int)pending;
    }
}
