namespace XenShare.Rings;

/// <summary>
/// The back end of a shared ring of <c>xen/io/ring.h</c> (<c>struct *_back_ring</c>): consumes requests
/// and produces responses, with the private <see cref="RequestConsumer"/> (<c>req_cons</c>) and
/// <see cref="ResponseProducerPrivate"/> (<c>rsp_prod_pvt</c>) of spec RG02.
/// </summary>
/// <remarks>
/// Requests are copied out with <see cref="TryConsumeRequest(Span{byte})"/> (never read in place: the front
/// end may change them), each answered in <see cref="NextResponse"/> (or with <see cref="WriteResponse{T}"/>)
/// and published with <see cref="PushResponsesAndCheckNotify"/>; before waiting for the event channel call
/// <see cref="FinalCheckForRequests"/> (RG03). A <c>req_prod</c> more than the free slots ahead, or behind
/// the consumer, is a protocol error (<see cref="RingProtocolException"/>, RG04). Not thread-safe: one
/// thread drives the back end.
/// </remarks>
public sealed class BackRing : SharedRing
{
    private uint _reqCons;
    private uint _reqSeen;
    private uint _rspProdPvt;
    private uint _rspPushed;

    /// <summary>
    /// Attaches to a ring (<c>BACK_RING_ATTACH</c>): the private indexes start at <paramref name="startIndex"/>;
    /// the shared header is neither read nor written (the front end initialized it).
    /// </summary>
    /// <param name="address">The ring's first byte; mapped and writable while this object is used.</param>
    /// <param name="length">The ring's bytes (one or more pages).</param>
    /// <param name="entrySize">The size of an entry: the larger of the request and response sizes.</param>
    /// <param name="startIndex">Where the indexes stand (0 on a freshly initialized ring).</param>
    public BackRing(long address, int length, int entrySize, uint startIndex = 0)
        : base(address, length, entrySize)
    {
        _reqCons = _reqSeen = _rspProdPvt = _rspPushed = startIndex;
    }

    /// <summary><c>req_cons</c>: the index of the next request to read.</summary>
    public uint RequestConsumer => _reqCons;

    /// <summary><c>rsp_prod_pvt</c>: the index of the next response to write.</summary>
    public uint ResponseProducerPrivate => _rspProdPvt;

    /// <summary>Requests consumed but not yet answered (responses may be written for these).</summary>
    public int UnansweredRequests => (int)(_reqCons - _rspProdPvt);

    /// <summary>
    /// The requests the front end pushed and this end has not consumed (<c>RING_HAS_UNCONSUMED_REQUESTS</c>).
    /// Reads <c>req_prod</c> once.
    /// </summary>
    /// <exception cref="RingProtocolException">RG04: <c>req_prod</c> is more than the ring's free slots ahead
    /// of <see cref="RequestConsumer"/> (<c>RING_REQUEST_PROD_OVERFLOW</c>) or behind it; the ring is
    /// faulted.</exception>
    public int UnconsumedRequests()
    {
        ThrowIfFaulted();
        uint prod = Volatile.Read(ref ReqProd);   // acquire: entries are read after the index
        uint available = prod - _reqCons;
        uint free = (uint)EntryCount - (_reqCons - _rspProdPvt);
        if (available > free)
            Fault($"req_prod {Hex(prod)} is not between req_cons {Hex(_reqCons)} and the ring's free slots ({free}, rsp_prod_pvt {Hex(_rspProdPvt)})");
        _reqSeen = prod;
        return (int)available;
    }

    /// <summary>Copies the next request into <paramref name="destination"/> (at most
    /// <see cref="SharedRing.EntrySize"/> bytes) and consumes it; false when there is none.</summary>
    /// <param name="destination">Receives the request.</param>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="UnconsumedRequests"/>).</exception>
    public bool TryConsumeRequest(Span<byte> destination)
    {
        if (!HasRequest()) return false;
        CopyOut(_reqCons, destination);
        _reqCons++;
        return true;
    }

    /// <summary>Reads the next request as <typeparamref name="T"/> (one copy out of shared memory,
    /// <c>RING_COPY_REQUEST</c>) and consumes it; false when there is none.</summary>
    /// <typeparam name="T">The request struct, at most <see cref="SharedRing.EntrySize"/> bytes.</typeparam>
    /// <param name="request">The request, or default.</param>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="UnconsumedRequests"/>).</exception>
    public bool TryConsumeRequest<T>(out T request) where T : unmanaged
    {
        if (!HasRequest())
        {
            request = default;
            return false;
        }

        request = ReadEntry<T>(_reqCons);
        _reqCons++;
        return true;
    }

    /// <summary>The slot of the next response (at <see cref="ResponseProducerPrivate"/>); fill it, then
    /// <see cref="CommitResponse"/>.</summary>
    /// <exception cref="InvalidOperationException">Every consumed request is answered already (the slot
    /// still holds an unconsumed request).</exception>
    public Span<byte> NextResponse()
    {
        ThrowIfFaulted();
        if (_rspProdPvt == _reqCons) throw new InvalidOperationException("no consumed request is waiting for a response");
        return Entry(_rspProdPvt);
    }

    /// <summary>Counts the response written into <see cref="NextResponse"/> (<c>rsp_prod_pvt++</c>).</summary>
    /// <exception cref="InvalidOperationException">Every consumed request is answered already.</exception>
    public void CommitResponse()
    {
        ThrowIfFaulted();
        if (_rspProdPvt == _reqCons) throw new InvalidOperationException("no consumed request is waiting for a response");
        _rspProdPvt++;
    }

    /// <summary>Writes <paramref name="response"/> into the next slot (the rest of the entry zeroed) and
    /// commits it.</summary>
    /// <typeparam name="T">The response struct, at most <see cref="SharedRing.EntrySize"/> bytes.</typeparam>
    /// <param name="response">The response.</param>
    /// <exception cref="InvalidOperationException">Every consumed request is answered already.</exception>
    public void WriteResponse<T>(in T response) where T : unmanaged
    {
        Span<byte> slot = NextResponse();
        WriteEntry(slot, in response);
        _rspProdPvt++;
    }

    /// <summary><c>RING_PUSH_RESPONSES</c>: publishes the committed responses (entries before the index).</summary>
    public void PushResponses()
    {
        ThrowIfFaulted();
        Volatile.Write(ref RspProd, _rspProdPvt);   // wmb (release)
        _rspPushed = _rspProdPvt;
    }

    /// <summary>
    /// <c>RING_PUSH_RESPONSES_AND_CHECK_NOTIFY</c> (RG03): publishes the committed responses and tells
    /// whether the front end must be notified - only when the new responses crossed its <c>rsp_event</c>,
    /// i.e. <c>(uint)(new - rsp_event) &lt; (uint)(new - old)</c>.
    /// </summary>
    /// <returns>True when the caller must notify the front end's event channel.</returns>
    public bool PushResponsesAndCheckNotify()
    {
        ThrowIfFaulted();
        uint old = _rspPushed;
        uint now = _rspProdPvt;
        Volatile.Write(ref RspProd, now);   // wmb: entries before the index (release)
        _rspPushed = now;
        Interlocked.MemoryBarrier();         // mb: the index before reading rsp_event
        uint evt = Volatile.Read(ref RspEvent);
        return now - evt < now - old;
    }

    /// <summary>
    /// <c>RING_FINAL_CHECK_FOR_REQUESTS</c> (RG03): true when requests are waiting; otherwise sets
    /// <c>req_event</c> to <c>req_cons + 1</c> (ask for an event on the next request), issues a full barrier
    /// and checks again, so a request pushed meanwhile is not missed. When it returns false, wait for the
    /// event channel.
    /// </summary>
    /// <exception cref="RingProtocolException">RG04 (see <see cref="UnconsumedRequests"/>).</exception>
    public bool FinalCheckForRequests()
    {
        ThrowIfFaulted();
        if (_reqSeen != _reqCons || UnconsumedRequests() > 0) return true;
        Volatile.Write(ref ReqEvent, _reqCons + 1);
        Interlocked.MemoryBarrier();   // mb: req_event before re-reading req_prod
        return UnconsumedRequests() > 0;
    }

    private bool HasRequest()
    {
        ThrowIfFaulted();
        return _reqSeen != _reqCons || UnconsumedRequests() > 0;
    }
}
