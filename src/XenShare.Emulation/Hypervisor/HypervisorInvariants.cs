namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// The hypervisor's self-checks, for tests and tools: leak findings (<see cref="CheckLeaks"/>) and the
/// consistency of grant pins, frame ownership and reference counts over the whole host
/// (<see cref="Check"/>). Each returns a list of problems, empty when clean.
/// </summary>
/// <remarks>Takes no lock of its own: the domain list is snapshotted under the host's domain lock, each
/// grant table is scanned under its own lock, one at a time. Meant to run while no hypercall runs;
/// otherwise a finding may describe a state in passing.</remarks>
public static class HypervisorInvariants
{
    /// <summary>Hypervisor-level leak findings: maptrack handles in use, foreign P2M slots, zombies,
    /// grant entries left valid, grant pins, bound event channels. Empty when clean.</summary>
    public static List<string> CheckLeaks(XenHost host)
    {
        ArgumentNullException.ThrowIfNull(host);
        var problems = new List<string>();
        foreach (var d in host.Domains)
        {
            if (d.MapTrackInUse != 0) problems.Add($"{d}: {d.MapTrackInUse} maptrack handle(s) in use");
            int foreign = d.P2M.CountForeign();
            if (foreign != 0) problems.Add($"{d}: {foreign} foreign P2M mapping(s)");
            int valid = d.GrantTable.CountValidEntries();
            if (valid != 0) problems.Add($"{d}: {valid} grant entr(y/ies) still valid");
            if (d.GrantTable.ActivePins != 0) problems.Add($"{d}: {d.GrantTable.ActivePins} grant pin(s)");
            if (d.Events.BoundCount != 0) problems.Add($"{d}: {d.Events.BoundCount} event channel(s) bound");
        }
        int z = host.ZombieCount;
        if (z != 0) problems.Add($"{z} zombie domain(s)");
        return problems;
    }

    /// <summary>Consistency check of the whole host, to be called while no hypercall runs: grant pins
    /// match GTF_reading/GTF_writing (GT07), every allocated machine frame is owned exactly once (one RAM
    /// slot or grant frame of its owner, live or zombie) and its reference count equals that ownership plus
    /// the grant pins on it (so it is never negative and nothing is counted twice), free frames are exactly
    /// those with count 0, and every foreign P2M slot shows a pinned frame. Empty when consistent.</summary>
    public static List<string> Check(XenHost host)
    {
        ArgumentNullException.ThrowIfNull(host);
        var problems = new List<string>();
        var pins = new Dictionary<ulong, int>();
        var owned = new List<(ulong Mfn, string What)>();
        var foreign = new List<(ulong Mfn, string What)>();
        var memory = host.Memory;
        foreach (var d in host.DomainsAndZombies())
        {
            d.GrantTable.CheckInvariants(problems, pins, owned);
            CollectP2M(d, memory, problems, owned, foreign);
        }
        var ownedBy = new Dictionary<ulong, string>();
        foreach (var (mfn, what) in owned)
            if (!ownedBy.TryAdd(mfn, what)) problems.Add($"machine frame {mfn} owned twice: {ownedBy[mfn]} and {what}");
        foreach (var (mfn, what) in foreign)
            if (!pins.ContainsKey(mfn)) problems.Add($"{what}: foreign frame {mfn} is not pinned by any grant");
        CheckFrameCounts(memory, ownedBy, pins, problems);
        return problems;
    }

    /// <summary>Every populated GFN of a domain: its RAM frames (owned, and by the domain itself) and its
    /// foreign frames.</summary>
    private static void CollectP2M(Domain d, MachineMemory memory, List<string> problems, List<(ulong Mfn, string What)> owned, List<(ulong Mfn, string What)> foreign)
    {
        for (int g = 0; g < d.P2M.Size; g++)
        {
            if (!d.P2M.TryGet(new GuestFrame((ulong)g), out var mfn, out bool isForeign)) continue;
            (isForeign ? foreign : owned).Add((mfn.Value, $"{d} gfn {g}"));
            if (!isForeign && memory.OwnerOf(mfn) != d.Id) problems.Add($"{d} gfn {g}: RAM frame {mfn} owned by dom{memory.OwnerOf(mfn)}");
        }
    }

    /// <summary>Each frame's reference count is its ownership plus its grant pins, the grant pins the
    /// allocator counts are those the entries hold, and the free frames are exactly those with count 0.</summary>
    private static void CheckFrameCounts(MachineMemory memory, Dictionary<ulong, string> ownedBy, Dictionary<ulong, int> pins, List<string> problems)
    {
        long free = 0;
        for (int f = 1; f < memory.FrameCount; f++)
        {
            var mfn = new MachineFrame((ulong)f);
            int rc = memory.RefCountOf(mfn);
            int expect = (ownedBy.ContainsKey((ulong)f) ? 1 : 0) + pins.GetValueOrDefault((ulong)f);
            int grantPins = memory.GrantPinsOf(mfn);
            if (grantPins != pins.GetValueOrDefault((ulong)f)) problems.Add($"machine frame {f}: {grantPins} grant pin(s) counted, entries hold {pins.GetValueOrDefault((ulong)f)}");
            if (rc < 0) problems.Add($"machine frame {f}: negative reference count {rc}");
            else if (rc != expect) problems.Add($"machine frame {f}: reference count {rc}, expected {expect} (owned {ownedBy.ContainsKey((ulong)f)}, pins {pins.GetValueOrDefault((ulong)f)})");
            if (rc == 0) free++;
        }
        if (free != memory.FreeFrames) problems.Add($"free frames: counted {free}, allocator says {memory.FreeFrames}");
    }
}
