namespace XenShare.Emulation.Hypervisor;

// The grant-table hypercall arguments (xen/include/public/grant_table.h), in .NET casing. Grouped in one
// file because they are one hypercall interface. Plain mutable fields, like the C structs they mirror.
// As GNTTABOP_* do, XenHost's map, unmap and copy take a span of these (a single op is a batch of one)
// and write one status per op into its Status field.
#pragma warning disable CA1051, CA1815

/// <summary>GNTTABOP_map_grant_ref argument.</summary>
public struct GnttabMapGrantRef
{
    /// <summary>In: where to map: a guest-physical address (auto-translated) or a virtual address (PV).</summary>
    public ulong HostAddr;
    /// <summary>In: GNTMAP_* flags.</summary>
    public uint Flags;
    /// <summary>In: the grant reference.</summary>
    public GrantRef Ref;
    /// <summary>In: the granting domain.</summary>
    public DomainId Dom;
    /// <summary>Out: GNTST status.</summary>
    public short Status;
    /// <summary>Out: the maptrack handle.</summary>
    public int Handle;
    /// <summary>Out: the bus (machine) address of the frame.</summary>
    public ulong DevBusAddr;
}

/// <summary>GNTTABOP_unmap_grant_ref argument.</summary>
public struct GnttabUnmapGrantRef
{
    /// <summary>In: the host address given at map time, or 0 to ignore.</summary>
    public ulong HostAddr;
    /// <summary>In: the bus address returned at map time, or 0 to ignore.</summary>
    public ulong DevBusAddr;
    /// <summary>In: the maptrack handle.</summary>
    public int Handle;
    /// <summary>Out: GNTST status.</summary>
    public short Status;
}

/// <summary>One side of a GNTTABOP_copy: a grant ref or a local GFN.</summary>
public struct GnttabCopyPtr
{
    /// <summary>Grant ref (with the gref flag) or GFN (without).</summary>
    public ulong RefOrGfn;
    /// <summary>The domain of the operand.</summary>
    public DomainId Domain;
    /// <summary>Byte offset in the page.</summary>
    public ushort Offset;
}

/// <summary>GNTTABOP_copy argument.</summary>
public struct GnttabCopy
{
    /// <summary>Source operand.</summary>
    public GnttabCopyPtr Source;
    /// <summary>Destination operand.</summary>
    public GnttabCopyPtr Dest;
    /// <summary>Bytes to copy.</summary>
    public ushort Len;
    /// <summary>GNTCOPY_source_gref | GNTCOPY_dest_gref.</summary>
    public ushort Flags;
    /// <summary>Out: GNTST status.</summary>
    public short Status;
}
