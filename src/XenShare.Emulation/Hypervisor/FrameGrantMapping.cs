namespace XenShare.Emulation.Hypervisor;

/// <summary>One grant through which a machine frame is mapped (or being copied) right now.</summary>
/// <param name="Mapper">The domain the grant entry names: the one that maps the frame.</param>
/// <param name="Granter">The domain whose grant table holds the entry.</param>
/// <param name="Ref">The grant reference.</param>
/// <param name="Pins">Live pins of the entry: one per mapping, or per grant copy in progress.</param>
public readonly record struct FrameGrantMapping(DomainId Mapper, DomainId Granter, GrantRef Ref, int Pins)
{
    /// <summary>"dom1 maps ref 12 of dom0 (1 pin)".</summary>
    public override string ToString() => $"dom{Mapper} maps ref {Ref} of dom{Granter} ({Pins} pin{(Pins == 1 ? "" : "s")})";
}
