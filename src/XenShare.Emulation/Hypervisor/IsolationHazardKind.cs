namespace XenShare.Emulation.Hypervisor;

/// <summary>What the <see cref="IsolationMonitor"/> caught.</summary>
public enum IsolationHazardKind
{
    /// <summary>A guest freed a page to its allocator, or Xen freed a machine frame, while a domain still
    /// maps the frame through a grant: whatever the owner puts there next is visible to the mapper.</summary>
    FreedWhileMapped,

    /// <summary>Machine memory scrubbed a frame that a domain maps through a grant.</summary>
    ScrubbedWhileMapped,

    /// <summary>Machine memory gave a frame to an owner while a domain maps it through a grant.</summary>
    ReassignedWhileMapped,

    /// <summary>A reference was taken on a guest page whose count is 0: a free page, or a tail page of a
    /// DMA block allocated without CMA. On Linux the matching put frees that page early ("BUG: Bad page
    /// state ... nonzero _refcount" follows).</summary>
    ReferenceOnFreePage,
}
