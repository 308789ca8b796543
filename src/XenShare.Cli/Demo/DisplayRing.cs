using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Cli.Demo;

/// <summary>Operations of a <see cref="DisplayRequest"/>.</summary>
internal enum DisplayOperation : ushort
{
    /// <summary>Show buffer <see cref="DisplayRequest.Buffer"/> (XENDISPL_OP_PG_FLIP).</summary>
    PageFlip = 1,

    /// <summary>The frontend is going away: the backend answers and stops reading the ring.</summary>
    Disconnect = 2,
}

/// <summary>A request slot (frontend to backend), 16 bytes.</summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
internal struct DisplayRequest
{
    /// <summary>Request id, echoed in the response.</summary>
    public ulong Id;

    /// <summary>A <see cref="DisplayOperation"/>.</summary>
    public ushort Operation;

    /// <summary>Framebuffer index (page flip).</summary>
    public ushort Buffer;

    /// <summary>The frame number drawn in the buffer (for the backend's file names).</summary>
    public uint Frame;
}

/// <summary>A response slot (backend to frontend), 16 bytes, sharing the slot of the request it answers.</summary>
[StructLayout(LayoutKind.Sequential, Size = 16)]
internal struct DisplayResponse
{
    /// <summary>The request's id.</summary>
    public ulong Id;

    /// <summary>0 or -errno (XENDISPL-style status).</summary>
    public int Status;

    /// <summary>The request's frame number.</summary>
    public uint Frame;
}

/// <summary>
/// The demo's page-flip ring: one shared granted page laid out like a Xen shared ring (xen/io/ring.h) carrying
/// displif-style page-flip requests (xen/io/displif.h, XENDISPL_OP_PG_FLIP) one way and their completions the other.
/// </summary>
/// <remarks>
/// <para>Layout of the page (little-endian):</para>
/// <code>
/// offset  size       field
///      0     4       req_prod   requests published by the frontend (a free-running counter)
///      4     4       req_event  reserved (0): the demo notifies after every push
///      8     4       rsp_prod   responses published by the backend (free-running)
///     12     4       rsp_event  reserved (0)
///     16    48       pad
///     64    16 * 128 slots: union { DisplayRequest {u64 id; u16 op; u16 buffer; u32 frame};
///                                   DisplayResponse {u64 id; i32 status; u32 frame} }
/// </code>
/// <para>Slot <c>i &amp; 127</c> holds request <c>i</c> until the backend answers it in place, as in Xen rings. Each
/// side keeps its private counters (the frontend req_prod_pvt and rsp_cons, the backend req_cons and rsp_prod_pvt)
/// outside the page. Barriers: a producer writes its slots, then publishes the index with a release store
/// (Xen's wmb() before the prod update); a consumer reads the index with an acquire load (rmb() after it) before it
/// reads slots. The frontend never has more than 128 requests unanswered, so a response never overwrites an
/// unread request. The peer is not trusted: the backend checks every field of a request.</para>
/// </remarks>
internal sealed class DisplayRing
{
    /// <summary>Slots in the ring.</summary>
    public const int Size = 128;

    /// <summary>Offset of slot 0.</summary>
    public const int SlotsOffset = 64;

    /// <summary>Bytes per slot.</summary>
    public const int SlotSize = 16;

    /// <summary>Bytes the ring needs (fits one page).</summary>
    public const int Bytes = SlotsOffset + (Size * SlotSize);

    private const int ReqProdOffset = 0;
    private const int RspProdOffset = 8;

    private readonly long _address;
    private uint _reqProdPvt;   // frontend
    private uint _rspCons;      // frontend
    private uint _reqCons;      // backend
    private uint _rspProdPvt;   // backend

    private DisplayRing(long address) => _address = address;

    /// <summary>The frontend's view: initialises the shared page (SHARED_RING_INIT) and returns it.</summary>
    public static DisplayRing InitFrontend(Span<byte> page, long address)
    {
        page[..Bytes].Clear();
        return new DisplayRing(address);
    }

    /// <summary>The backend's view of a ring page mapped at <paramref name="address"/> (BACK_RING_INIT).</summary>
    public static DisplayRing AttachBackend(long address) => new(address);

    /// <summary>Requests the frontend pushed that have not been answered yet.</summary>
    public int Outstanding => (int)(_reqProdPvt - _rspCons);

    private unsafe ref uint Index(int offset) => ref Unsafe.AsRef<uint>((void*)(_address + offset));

    private unsafe ref T Slot<T>(uint index) where T : unmanaged =>
        ref Unsafe.AsRef<T>((void*)(_address + SlotsOffset + ((index & (Size - 1)) * SlotSize)));

    // ------------------------------------------------------------------ frontend

    /// <summary>Frontend: queues a request (not yet visible); false when the ring is full.</summary>
    public bool TryPushRequest(in DisplayRequest request)
    {
        if (_reqProdPvt - _rspCons >= Size) return false;
        Slot<DisplayRequest>(_reqProdPvt) = request;
        _reqProdPvt++;
        return true;
    }

    /// <summary>Frontend: publishes queued requests (RING_PUSH_REQUESTS: release store of req_prod).</summary>
    public void PublishRequests() => Volatile.Write(ref Index(ReqProdOffset), _reqProdPvt);

    /// <summary>Frontend: takes the next response, if the backend published one.</summary>
    public bool TryTakeResponse(out DisplayResponse response)
    {
        uint prod = Volatile.Read(ref Index(RspProdOffset));   // acquire: slots are read after the index
        if (_rspCons == prod || prod - _rspCons > Size)
        {
            response = default;
            return false;
        }
        response = Slot<DisplayResponse>(_rspCons);
        _rspCons++;
        return true;
    }

    // ------------------------------------------------------------------ backend

    /// <summary>Backend: takes the next published request. A producer index more than a ring ahead is a
    /// broken frontend: <see cref="InvalidDataException"/>.</summary>
    public bool TryTakeRequest(out DisplayRequest request)
    {
        uint prod = Volatile.Read(ref Index(ReqProdOffset));   // acquire
        if (_reqCons == prod)
        {
            request = default;
            return false;
        }
        if (prod - _rspProdPvt > Size) throw new InvalidDataException($"display ring: req_prod {prod} is more than {Size} ahead of the responses ({_rspProdPvt})");
        request = Slot<DisplayRequest>(_reqCons);
        _reqCons++;
        return true;
    }

    /// <summary>Backend: queues a response in the slot of the oldest unanswered request.</summary>
    public void PushResponse(in DisplayResponse response)
    {
        Slot<DisplayResponse>(_rspProdPvt) = response;
        _rspProdPvt++;
    }

    /// <summary>Backend: publishes queued responses (release store of rsp_prod).</summary>
    public void PublishResponses() => Volatile.Write(ref Index(RspProdOffset), _rspProdPvt);
}
