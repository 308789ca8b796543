using System.Globalization;

namespace XenShare.Rings;

/// <summary>
/// The 16-bit request ids a front end has issued and not yet seen answered (displif's <c>xendispl_req.id</c>).
/// A response naming an id that is not pending - never issued, or answered already - is a protocol error
/// (spec RG04), reported as <see cref="RingProtocolException"/>.
/// </summary>
/// <remarks>Not thread-safe: used by the thread that drives the front end.</remarks>
public sealed class PendingRequestIds
{
    private readonly ulong[] _pending = new ulong[65536 / 64];
    private ushort _next;

    /// <summary>Tracks at most <paramref name="capacity"/> pending ids (the ring's entry count is enough).</summary>
    /// <param name="capacity">1 to 65536.</param>
    public PendingRequestIds(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(capacity, 65536);
        Capacity = capacity;
    }

    /// <summary>The most ids that may be pending at once.</summary>
    public int Capacity { get; }

    /// <summary>The ids pending now.</summary>
    public int Count { get; private set; }

    /// <summary>Issues an id that is not pending (ids run upward, wrapping at 65536).</summary>
    /// <exception cref="InvalidOperationException"><see cref="Capacity"/> ids are pending.</exception>
    public ushort Issue()
    {
        if (Count >= Capacity) throw new InvalidOperationException("every request id is pending");
        while (IsPending(_next)) _next++;
        ushort id = _next++;
        _pending[id >> 6] |= 1UL << (id & 63);
        Count++;
        return id;
    }

    /// <summary>True when <paramref name="id"/> was issued and not yet completed.</summary>
    /// <param name="id">A request id.</param>
    public bool IsPending(ushort id) => (_pending[id >> 6] & (1UL << (id & 63))) != 0;

    /// <summary>Completes <paramref name="id"/> (its response arrived).</summary>
    /// <param name="id">The id a response names.</param>
    /// <exception cref="RingProtocolException">The id is not pending: the peer answered a request that was
    /// never issued, or answered one twice.</exception>
    public void Complete(ushort id)
    {
        if (!IsPending(id))
            throw new RingProtocolException("a response names request id " + id.ToString(CultureInfo.InvariantCulture) + ", which is not pending");
        _pending[id >> 6] &= ~(1UL << (id & 63));
        Count--;
    }
}
