using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Rings;

/// <summary>
/// What the two ends of a shared ring of <c>xen/io/ring.h</c> have in common: the memory (an address the
/// caller keeps mapped, e.g. <see cref="Api.SharedPages.Address"/> or <see cref="Api.GrantMapping.Address"/>),
/// the entry size and count (spec RG01), and the fault state of RG04. The shared indexes are accessed with
/// <see cref="Volatile"/> reads and writes; every private index lives in this object, never re-read from
/// the page a hostile peer may write.
/// </summary>
/// <remarks>Not thread-safe: one thread drives one end at a time (the peer runs concurrently, in another
/// thread, process or domain).</remarks>
public abstract class SharedRing
{
    private readonly nint _address;
    private string? _fault;

    /// <summary>Attaches to a ring at <paramref name="address"/>.</summary>
    /// <param name="address">The ring's first byte; mapped and writable while this object is used.</param>
    /// <param name="length">The ring's bytes (one or more pages).</param>
    /// <param name="entrySize">The size of an entry: the larger of the request and response sizes.</param>
    private protected SharedRing(long address, int length, int entrySize)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(address);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(entrySize);
        int count = SharedRingLayout.EntryCount(length, entrySize);
        if (count == 0)
            throw new ArgumentOutOfRangeException(nameof(length), length, "not one entry of " + entrySize.ToString(CultureInfo.InvariantCulture) + " bytes fits after the 64-byte header");
        _address = (nint)address;
        Length = length;
        EntrySize = entrySize;
        EntryCount = count;
    }

    /// <summary>The ring's first byte.</summary>
    public long Address => _address;

    /// <summary>The ring's bytes, as given.</summary>
    public int Length { get; }

    /// <summary>The size of one entry (the request/response union).</summary>
    public int EntrySize { get; }

    /// <summary>The number of entries (<c>RING_SIZE</c>): a power of two.</summary>
    public int EntryCount { get; }

    /// <summary>True once the peer broke the protocol (RG04); every later operation throws
    /// <see cref="RingProtocolException"/>.</summary>
    public bool IsFaulted => _fault is not null;

    /// <summary>The shared <c>req_prod</c> as it is now (a diagnostic snapshot; decisions use the checked
    /// reads inside the ring).</summary>
    public uint SharedRequestProducer => Volatile.Read(ref ReqProd);

    /// <summary>The shared <c>req_event</c> as it is now.</summary>
    public uint SharedRequestEvent => Volatile.Read(ref ReqEvent);

    /// <summary>The shared <c>rsp_prod</c> as it is now.</summary>
    public uint SharedResponseProducer => Volatile.Read(ref RspProd);

    /// <summary>The shared <c>rsp_event</c> as it is now.</summary>
    public uint SharedResponseEvent => Volatile.Read(ref RspEvent);

    private protected unsafe ref uint ReqProd => ref Unsafe.AsRef<uint>((void*)(_address + SharedRingLayout.RequestProducerOffset));
    private protected unsafe ref uint ReqEvent => ref Unsafe.AsRef<uint>((void*)(_address + SharedRingLayout.RequestEventOffset));
    private protected unsafe ref uint RspProd => ref Unsafe.AsRef<uint>((void*)(_address + SharedRingLayout.ResponseProducerOffset));
    private protected unsafe ref uint RspEvent => ref Unsafe.AsRef<uint>((void*)(_address + SharedRingLayout.ResponseEventOffset));

    /// <summary>The entry that free-running <paramref name="index"/> names (RG02: masked by the size).</summary>
    private protected unsafe Span<byte> Entry(uint index) =>
        new((void*)(_address + SharedRingLayout.EntryOffset(index, EntryCount, EntrySize)), EntrySize);

    private protected void ThrowIfFaulted()
    {
        if (_fault is not null) throw new RingProtocolException(_fault);
    }

    /// <summary>Records the protocol error and throws it (RG04).</summary>
    private protected void Fault(string message)
    {
        _fault ??= message;
        throw new RingProtocolException(message);
    }

    /// <summary>Copies one entry out of shared memory: one snapshot, so a peer changing it meanwhile cannot
    /// make a check and a use see different bytes.</summary>
    private protected void CopyOut(uint index, Span<byte> destination)
    {
        Span<byte> entry = Entry(index);
        int n = Math.Min(destination.Length, EntrySize);
        entry[..n].CopyTo(destination);
    }

    private protected T ReadEntry<T>(uint index) where T : unmanaged
    {
        CheckSize<T>();
        return MemoryMarshal.Read<T>(Entry(index));
    }

    private protected void WriteEntry<T>(Span<byte> slot, in T value) where T : unmanaged
    {
        CheckSize<T>();
        MemoryMarshal.Write(slot, in value);
        slot[Unsafe.SizeOf<T>()..].Clear();   // no stale bytes reach the peer
    }

    private void CheckSize<T>() where T : unmanaged
    {
        if (Unsafe.SizeOf<T>() > EntrySize)
            throw new ArgumentException(string.Format(CultureInfo.InvariantCulture,
                "{0} ({1} bytes) is larger than an entry ({2} bytes)", typeof(T).Name, Unsafe.SizeOf<T>(), EntrySize));
    }

    private protected static string Hex(uint value) => "0x" + value.ToString("x8", CultureInfo.InvariantCulture);
}
