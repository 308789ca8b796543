using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Emulation;

/// <summary>One grant op as a batch of one: the hypervisor's map and unmap take batches only (as
/// GNTTABOP_* do); these return the op's status for tests that check a single op.</summary>
internal static class SingleGrantOps
{
    /// <summary>GNTTABOP_map_grant_ref with a batch of one; returns the op's status.</summary>
    public static short MapOne(this XenHost xen, Domain caller, ref GnttabMapGrantRef op)
    {
        xen.MapGrantRefs(caller, new Span<GnttabMapGrantRef>(ref op));
        return op.Status;
    }

    /// <summary>GNTTABOP_unmap_grant_ref with a batch of one; returns the op's status.</summary>
    public static short UnmapOne(this XenHost xen, Domain caller, ref GnttabUnmapGrantRef op)
    {
        xen.UnmapGrantRefs(caller, new Span<GnttabUnmapGrantRef>(ref op));
        return op.Status;
    }
}
