namespace XenShare.Rings;

/// <summary>
/// The consumer of an event page (displif's front end): reads the event at <c>in_cons % EntryCount</c>,
/// copying it out of shared memory, then publishes <c>in_cons + 1</c> (release: the read before the slot is
/// handed back).
/// </summary>
/// <remarks>
/// The consumer index is private (read from the page once, when attaching); <c>in_prod</c> is read once per
/// check and must lie within <see cref="EventPageRing.EntryCount"/> ahead of it, or the read throws
/// <see cref="RingProtocolException"/> (RG04). Wait for the event channel when
/// <see cref="Available"/> is 0: the producer notifies after every write, so no final re-check is needed.
/// </remarks>
public sealed class EventPageConsumer : EventPageRing
{
    private uint _cons;
    private uint _seen;

    /// <summary>Attaches to an event page; the consumer index starts at the page's <c>in_cons</c>.</summary>
    /// <param name="address">The page's first byte; mapped and writable while this object is used.</param>
    /// <param name="length">The page's bytes.</param>
    /// <param name="ringOffset">Where the events start (at least 8).</param>
    /// <param name="entrySize">The size of one event.</param>
    public EventPageConsumer(long address, int length, int ringOffset, int entrySize)
        : base(address, length, ringOffset, entrySize)
    {
        _cons = _seen = Volatile.Read(ref InCons);
    }

    /// <summary>Attaches to displif's event page (<see cref="EventPageRing.DisplifLayout"/>).</summary>
    /// <param name="address">The page's first byte (4096 bytes, mapped and writable).</param>
    public static EventPageConsumer ForDisplif(long address)
    {
        var (length, offset, size) = DisplifLayout;
        return new EventPageConsumer(address, length, offset, size);
    }

    /// <summary>The private <c>in_cons</c>: the index of the next event to read.</summary>
    public uint Consumer => _cons;

    /// <summary>The events produced and not yet read. Reads <c>in_prod</c> once.</summary>
    /// <exception cref="RingProtocolException">RG04: <c>in_prod</c> is behind the consumer or more than
    /// <see cref="EventPageRing.EntryCount"/> ahead of it; the ring is faulted.</exception>
    public int Available()
    {
        ThrowIfFaulted();
        uint prod = Volatile.Read(ref InProd);   // acquire: the events are read after the index
        uint available = prod - _cons;
        if (available > (uint)EntryCount)
            Fault($"in_prod {Hex(prod)} is not within {EntryCount} events ahead of in_cons {Hex(_cons)}");
        _seen = prod;
        return (int)available;
    }

    /// <summary>Copies the next event into <paramref name="destination"/> (at most
    /// <see cref="EventPageRing.EntrySize"/> bytes) and consumes it; false when there is none.</summary>
    /// <param name="destination">Receives the event.</param>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="Available"/>).</exception>
    public bool TryRead(Span<byte> destination)
    {
        if (!HasEvent()) return false;
        Span<byte> slot = Entry(_cons);
        int n = Math.Min(destination.Length, EntrySize);
        slot[..n].CopyTo(destination);
        Consume();
        return true;
    }

    /// <summary>Reads the next event as <typeparamref name="T"/> (one copy) and consumes it; false when
    /// there is none.</summary>
    /// <typeparam name="T">The event struct (<see cref="Abi.xendispl_evt"/> for displif).</typeparam>
    /// <param name="evt">The event, or default.</param>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="Available"/>).</exception>
    public bool TryRead<T>(out T evt) where T : unmanaged
    {
        CheckSize<T>();
        if (!HasEvent())
        {
            evt = default;
            return false;
        }

        evt = Read<T>(Entry(_cons));
        Consume();
        return true;
    }

    private bool HasEvent()
    {
        ThrowIfFaulted();
        return _seen != _cons || Available() > 0;
    }

    private void Consume()
    {
        _cons++;
        Volatile.Write(ref InCons, _cons);   // release: the copy is complete before the slot is handed back
    }
}
