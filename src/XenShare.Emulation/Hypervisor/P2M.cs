namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// A domain's physical-to-machine table: guest frame (GFN) to machine frame (MFN) and the kind of
/// mapping. GFNs [0, RamPages) are the domain's RAM; the range above is unpopulated address space where
/// foreign grant mappings are placed (Linux's unpopulated-alloc / ballooned pages).
/// </summary>
/// <remarks>Lock-free: each slot is one 64-bit word updated with Interlocked operations.</remarks>
public sealed class P2M
{
    private const ulong TypeMask = 3, TypeRam = 1, TypeForeign = 2;
    private readonly ulong[] _slots;

    internal P2M(int size) => _slots = new ulong[size];

    /// <summary>Number of GFN slots.</summary>
    public int Size => _slots.Length;

    /// <summary>Looks up a GFN: the machine frame and whether it is a foreign (grant) mapping.</summary>
    public bool TryGet(GuestFrame gfn, out MachineFrame mfn, out bool foreign)
    {
        mfn = default; foreign = false;
        if (gfn.Value >= (ulong)_slots.Length) return false;
        ulong s = Volatile.Read(ref _slots[gfn.Value]);
        if (s == 0) return false;
        mfn = new MachineFrame(s >> 2);
        foreign = (s & TypeMask) == TypeForeign;
        return true;
    }

    internal void SetRam(GuestFrame gfn, MachineFrame mfn) => Volatile.Write(ref _slots[gfn.Value], (mfn.Value << 2) | TypeRam);

    /// <summary>Empties a RAM slot (decrease reservation); returns its frame.</summary>
    internal bool TryRemoveRam(GuestFrame gfn, out MachineFrame mfn)
    {
        mfn = default;
        if (gfn.Value >= (ulong)_slots.Length) return false;
        ulong s = Volatile.Read(ref _slots[gfn.Value]);
        if ((s & TypeMask) != TypeRam || Interlocked.CompareExchange(ref _slots[gfn.Value], 0, s) != s) return false;
        mfn = new MachineFrame(s >> 2);
        return true;
    }

    internal bool TryInstallForeign(GuestFrame gfn, MachineFrame mfn)
    {
        if (gfn.Value >= (ulong)_slots.Length) return false;
        return Interlocked.CompareExchange(ref _slots[gfn.Value], (mfn.Value << 2) | TypeForeign, 0) == 0;
    }

    internal bool TryRemoveForeign(GuestFrame gfn, MachineFrame mfn)
    {
        if (gfn.Value >= (ulong)_slots.Length) return false;
        ulong expect = (mfn.Value << 2) | TypeForeign;
        return Interlocked.CompareExchange(ref _slots[gfn.Value], 0, expect) == expect;
    }

    /// <summary>Number of slots holding foreign mappings (leak checks).</summary>
    public int CountForeign()
    {
        int n = 0;
        for (int i = 0; i < _slots.Length; i++) if ((Volatile.Read(ref _slots[i]) & TypeMask) == TypeForeign) n++;
        return n;
    }
}
