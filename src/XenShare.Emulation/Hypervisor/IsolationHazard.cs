namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// One finding of the <see cref="IsolationMonitor"/>: a machine frame that a domain maps through a grant
/// was freed, scrubbed or handed to an owner, or a page reference was taken on a page whose count was 0.
/// </summary>
public sealed record IsolationHazard
{
    /// <summary>What happened.</summary>
    public required IsolationHazardKind Kind { get; init; }

    /// <summary>The domain whose page or frame it is: the one that freed it (or took the reference).</summary>
    public required DomainId Owner { get; init; }

    /// <summary>The machine frame (0 when the guest page had no frame behind it).</summary>
    public required MachineFrame Frame { get; init; }

    /// <summary>The owner's guest page, when the hazard happened at a guest page.</summary>
    public GuestFrame? Page { get; init; }

    /// <summary>Every grant through which the frame is mapped at that moment: who maps it, whose ref.</summary>
    public required IReadOnlyList<FrameGrantMapping> Mappings { get; init; }

    /// <summary>The call chain that freed, scrubbed, handed out or referenced it, innermost first.</summary>
    public required string Call { get; init; }

    /// <summary>True when a domain other than the owner maps the frame.</summary>
    public bool CrossDomain
    {
        get
        {
            foreach (var m in Mappings) if (m.Mapper != Owner) return true;
            return false;
        }
    }

    /// <summary>One line: kind, owner, page and frame, who maps it, and the call.</summary>
    public override string ToString()
    {
        string page = Page is { } p ? $" gfn {p}" : "";
        string maps = Mappings.Count == 0 ? "no grant mapping" : string.Join("; ", Mappings);
        return $"{Kind}: dom{Owner}{page} machine frame {Frame} [{maps}] in {Call}";
    }
}
