namespace XenShare.Emulation.Hypervisor;

/// <summary>How the hypervisor reaches up into a domain's kernel without knowing it: the kernel registers
/// this callback interface with its domain (an upcall, as Xen's event upcall is).</summary>
public interface IDomainSink
{
    /// <summary>An event is pending on a local port that is not masked.</summary>
    void OnEvent(EventPort port);

    /// <summary>The last pin on one of this domain's grant entries went away (its GTF_reading/writing
    /// are now clear). Used for event-driven deferred reclaim (D06).</summary>
    void OnGrantUnpinned(GrantRef gref);
}
