namespace XenShare.Rings;

/// <summary>
/// The front end of a shared ring of <c>xen/io/ring.h</c> (<c>struct *_front_ring</c>): produces requests
/// and consumes responses, with the private <see cref="RequestProducerPrivate"/> (<c>req_prod_pvt</c>) and
/// <see cref="ResponseConsumer"/> (<c>rsp_cons</c>) of spec RG02.
/// </summary>
/// <remarks>
/// A request is written into <see cref="NextRequest"/> (or with <see cref="WriteRequest{T}"/>), made
/// visible with <see cref="PushRequestsAndCheckNotify"/> (notify the back end when it says so), and its
/// response read with <see cref="TryConsumeResponse(Span{byte})"/>; before waiting for the event channel
/// call <see cref="FinalCheckForResponses"/> (RG03). Responses beyond the requests pushed are a protocol
/// error (<see cref="RingProtocolException"/>, RG04). Not thread-safe: one thread drives the front end.
/// </remarks>
public sealed class FrontRing : SharedRing
{
    private uint _reqProdPvt;
    private uint _reqPushed;
    private uint _rspCons;
    private uint _rspSeen;

    /// <summary>
    /// Attaches to a ring (<c>FRONT_RING_ATTACH</c>): the private indexes start at
    /// <paramref name="startIndex"/>; the shared header is neither read nor written.
    /// </summary>
    /// <param name="address">The ring's first byte; mapped and writable while this object is used.</param>
    /// <param name="length">The ring's bytes (one or more pages).</param>
    /// <param name="entrySize">The size of an entry: the larger of the request and response sizes.</param>
    /// <param name="startIndex">Where the indexes stand (the shared <c>req_prod</c> and <c>rsp_prod</c>).</param>
    public FrontRing(long address, int length, int entrySize, uint startIndex = 0)
        : base(address, length, entrySize)
    {
        _reqProdPvt = _reqPushed = _rspCons = _rspSeen = startIndex;
    }

    /// <summary>
    /// <c>XEN_FRONT_RING_INIT</c>: initializes the shared header (<see cref="SharedRingLayout.Initialize"/>)
    /// and attaches at index 0. The front end owns the ring: it does this before granting the page.
    /// </summary>
    /// <param name="address">The ring's first byte; mapped and writable while the ring is used.</param>
    /// <param name="length">The ring's bytes (one or more pages).</param>
    /// <param name="entrySize">The size of an entry: the larger of the request and response sizes.</param>
    public static FrontRing Initialize(long address, int length, int entrySize)
    {
        var ring = new FrontRing(address, length, entrySize);
        SharedRingLayout.Initialize(GuestMemory.AsSpan(address, SharedRingLayout.HeaderSize));
        return ring;
    }

    /// <summary><c>req_prod_pvt</c>: the index of the next request to write.</summary>
    public uint RequestProducerPrivate => _reqProdPvt;

    /// <summary><c>rsp_cons</c>: the index of the next response to read.</summary>
    public uint ResponseConsumer => _rspCons;

    /// <summary><c>RING_FREE_REQUESTS</c>: requests that can be written before a response is consumed.</summary>
    public int FreeRequests => EntryCount - (int)(_reqProdPvt - _rspCons);

    /// <summary><c>RING_FULL</c>.</summary>
    public bool IsFull => FreeRequests == 0;

    /// <summary>The slot of the next request (at <see cref="RequestProducerPrivate"/>); fill it, then
    /// <see cref="CommitRequest"/>.</summary>
    /// <exception cref="InvalidOperationException">The ring is full.</exception>
    /// <exception cref="RingProtocolException">The ring is faulted.</exception>
    public Span<byte> NextRequest()
    {
        ThrowIfFaulted();
        if (IsFull) throw new InvalidOperationException("the ring is full: consume responses first");
        return Entry(_reqProdPvt);
    }

    /// <summary>Counts the request written into <see cref="NextRequest"/> (<c>req_prod_pvt++</c>); the back
    /// end sees it after the next push.</summary>
    /// <exception cref="InvalidOperationException">The ring is full.</exception>
    public void CommitRequest()
    {
        ThrowIfFaulted();
        if (IsFull) throw new InvalidOperationException("the ring is full: consume responses first");
        _reqProdPvt++;
    }

    /// <summary>Writes <paramref name="request"/> into the next slot (the rest of the entry zeroed) and
    /// commits it.</summary>
    /// <typeparam name="T">The request struct, at most <see cref="SharedRing.EntrySize"/> bytes.</typeparam>
    /// <param name="request">The request.</param>
    /// <exception cref="InvalidOperationException">The ring is full.</exception>
    public void WriteRequest<T>(in T request) where T : unmanaged
    {
        Span<byte> slot = NextRequest();
        WriteEntry(slot, in request);
        _reqProdPvt++;
    }

    /// <summary><c>RING_PUSH_REQUESTS</c>: publishes the committed requests (entries before the index).</summary>
    public void PushRequests()
    {
        ThrowIfFaulted();
        // wmb: Volatile.Write is a release, so the entries are visible before req_prod.
        Volatile.Write(ref ReqProd, _reqProdPvt);
        _reqPushed = _reqProdPvt;
    }

    /// <summary>
    /// <c>RING_PUSH_REQUESTS_AND_CHECK_NOTIFY</c> (RG03): publishes the committed requests and tells whether
    /// the back end must be notified - only when the new requests crossed its <c>req_event</c>, i.e.
    /// <c>(uint)(new - req_event) &lt; (uint)(new - old)</c>.
    /// </summary>
    /// <returns>True when the caller must notify the back end's event channel.</returns>
    public bool PushRequestsAndCheckNotify()
    {
        ThrowIfFaulted();
        uint old = _reqPushed;
        uint now = _reqProdPvt;
        Volatile.Write(ref ReqProd, now);   // wmb: entries before the index (release)
        _reqPushed = now;
        Interlocked.MemoryBarrier();         // mb: the index before reading req_event
        uint evt = Volatile.Read(ref ReqEvent);
        return now - evt < now - old;
    }

    /// <summary>
    /// The responses the back end produced and this end has not consumed
    /// (<c>RING_HAS_UNCONSUMED_RESPONSES</c>). Reads <c>rsp_prod</c> once.
    /// </summary>
    /// <exception cref="RingProtocolException">RG04: <c>rsp_prod</c> runs ahead of the requests pushed (or
    /// behind <see cref="ResponseConsumer"/>); the ring is faulted.</exception>
    public int UnconsumedResponses()
    {
        ThrowIfFaulted();
        uint prod = Volatile.Read(ref RspProd);   // acquire: entries are read after the index
        uint available = prod - _rspCons;
        uint outstanding = _reqPushed - _rspCons;
        if (available > outstanding)
            Fault($"rsp_prod {Hex(prod)} is not between rsp_cons {Hex(_rspCons)} and the requests pushed {Hex(_reqPushed)}: responses to requests never issued");
        _rspSeen = prod;
        return (int)available;
    }

    /// <summary>Copies the next response into <paramref name="destination"/> (at most
    /// <see cref="SharedRing.EntrySize"/> bytes) and consumes it; false when there is none.</summary>
    /// <param name="destination">Receives the response.</param>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="UnconsumedResponses"/>).</exception>
    public bool TryConsumeResponse(Span<byte> destination)
    {
        if (!HasResponse()) return false;
        CopyOut(_rspCons, destination);
        _rspCons++;
        return true;
    }

    /// <summary>Reads the next response as <typeparamref name="T"/> (one copy out of shared memory,
    /// <c>RING_COPY_RESPONSE</c>) and consumes it; false when there is none.</summary>
    /// <typeparam name="T">The response struct, at most <see cref="SharedRing.EntrySize"/> bytes.</typeparam>
    /// <param name="response">The response, or default.</param>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="UnconsumedResponses"/>).</exception>
    public bool TryConsumeResponse<T>(out T response) where T : unmanaged
    {
        if (!HasResponse())
        {
            response = default;
            return false;
        }

        response = ReadEntry<T>(_rspCons);
        _rspCons++;
        return true;
    }

    /// <summary>
    /// <c>RING_FINAL_CHECK_FOR_RESPONSES</c> (RG03): true when responses are waiting; otherwise sets
    /// <c>rsp_event</c> to <c>rsp_cons + 1</c> (ask for an event on the next response), issues a full
    /// barrier and checks again, so a response pushed meanwhile is not missed. When it returns false, wait
    /// for the event channel.
    /// </summary>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="UnconsumedResponses"/>).</exception>
    public bool FinalCheckForResponses()
    {
        ThrowIfFaulted();
        if (_rspSeen != _rspCons || UnconsumedResponses() > 0) return true;
        Volatile.Write(ref RspEvent, _rspCons + 1);
        Interlocked.MemoryBarrier();   // mb: rsp_event before re-reading rsp_prod
        return UnconsumedResponses() > 0;
    }

    private bool HasResponse()
    {
        ThrowIfFaulted();
        return _rspSeen != _rspCons || UnconsumedResponses() > 0;
    }
}
