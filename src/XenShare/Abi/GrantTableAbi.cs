namespace XenShare.Abi;

/// <summary>Grant status codes (GNTST_*) of xen/include/public/grant_table.h (GT05).</summary>
public static class GntSt
{
    /// <summary>GNTST_okay.</summary>
    public const short okay = 0;
    /// <summary>GNTST_general_error.</summary>
    public const short general_error = -1;
    /// <summary>GNTST_bad_domain.</summary>
    public const short bad_domain = -2;
    /// <summary>GNTST_bad_gntref.</summary>
    public const short bad_gntref = -3;
    /// <summary>GNTST_bad_handle.</summary>
    public const short bad_handle = -4;
    /// <summary>GNTST_bad_virt_addr.</summary>
    public const short bad_virt_addr = -5;
    /// <summary>GNTST_bad_dev_addr.</summary>
    public const short bad_dev_addr = -6;
    /// <summary>GNTST_no_device_space.</summary>
    public const short no_device_space = -7;
    /// <summary>GNTST_permission_denied.</summary>
    public const short permission_denied = -8;
    /// <summary>GNTST_bad_page.</summary>
    public const short bad_page = -9;
    /// <summary>GNTST_bad_copy_arg.</summary>
    public const short bad_copy_arg = -10;
    /// <summary>GNTST_address_too_big.</summary>
    public const short address_too_big = -11;
    /// <summary>GNTST_eagain.</summary>
    public const short eagain = -12;
    /// <summary>GNTST_no_space.</summary>
    public const short no_space = -13;

    /// <summary>The C name of a status code.</summary>
    public static string Name(short status) => status switch
    {
        okay => "GNTST_okay", general_error => "GNTST_general_error", bad_domain => "GNTST_bad_domain",
        bad_gntref => "GNTST_bad_gntref", bad_handle => "GNTST_bad_handle", bad_virt_addr => "GNTST_bad_virt_addr",
        bad_dev_addr => "GNTST_bad_dev_addr", no_device_space => "GNTST_no_device_space",
        permission_denied => "GNTST_permission_denied", bad_page => "GNTST_bad_page",
        bad_copy_arg => "GNTST_bad_copy_arg", address_too_big => "GNTST_address_too_big",
        eagain => "GNTST_eagain", no_space => "GNTST_no_space",
        _ => "GNTST_" + status.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}

/// <summary>Grant entry flags (GTF_*) of a v1 grant entry (GT01).</summary>
public static class Gtf
{
    /// <summary>GTF_invalid: entry type 0.</summary>
    public const ushort invalid = 0;
    /// <summary>GTF_permit_access: entry type 1.</summary>
    public const ushort permit_access = 1;
    /// <summary>GTF_accept_transfer: entry type 2.</summary>
    public const ushort accept_transfer = 2;
    /// <summary>GTF_transitive: entry type 3.</summary>
    public const ushort transitive = 3;
    /// <summary>Mask of the entry type bits.</summary>
    public const ushort type_mask = 3;
    /// <summary>GTF_readonly (set by the granter).</summary>
    public const ushort @readonly = 1 << 2;
    /// <summary>GTF_reading (set by Xen while mapped).</summary>
    public const ushort reading = 1 << 3;
    /// <summary>GTF_writing (set by Xen while mapped writable).</summary>
    public const ushort writing = 1 << 4;
    /// <summary>GTF_PWT.</summary>
    public const ushort PWT = 1 << 5;
    /// <summary>GTF_PCD.</summary>
    public const ushort PCD = 1 << 6;
    /// <summary>GTF_PAT.</summary>
    public const ushort PAT = 1 << 7;
    /// <summary>GTF_sub_page.</summary>
    public const ushort sub_page = 1 << 8;
}

/// <summary>Grant map flags (GNTMAP_*) (GT06).</summary>
public static class GntMap
{
    /// <summary>GNTMAP_device_map.</summary>
    public const uint device_map = 1 << 0;
    /// <summary>GNTMAP_host_map.</summary>
    public const uint host_map = 1 << 1;
    /// <summary>GNTMAP_readonly.</summary>
    public const uint @readonly = 1 << 2;
    /// <summary>GNTMAP_application_map.</summary>
    public const uint application_map = 1 << 3;
    /// <summary>GNTMAP_contains_pte.</summary>
    public const uint contains_pte = 1 << 4;
}

/// <summary>Grant copy flags (GNTCOPY_*) (GT09).</summary>
public static class GntCopy
{
    /// <summary>GNTCOPY_source_gref.</summary>
    public const ushort source_gref = 1 << 0;
    /// <summary>GNTCOPY_dest_gref.</summary>
    public const ushort dest_gref = 1 << 1;
}

/// <summary>Grant-table constants.</summary>
public static class GrantTableConstants
{
    /// <summary>Xen page size (<see cref="XenPage.Size"/>).</summary>
    public const int PageSize = XenPage.Size;
    /// <summary>Page shift (<see cref="XenPage.Shift"/>).</summary>
    public const int PageShift = XenPage.Shift;
    /// <summary>Size of a v1 grant entry.</summary>
    public const int GrantEntryV1Size = 8;
    /// <summary>v1 entries per grant frame.</summary>
    public const int EntriesPerFrame = PageSize / GrantEntryV1Size;
    /// <summary>Refs below this are reserved (GT02).</summary>
    public const uint NrReservedEntries = 8;
    /// <summary>GNTTAB_RESERVED_CONSOLE.</summary>
    public const uint ReservedConsole = 0;
    /// <summary>GNTTAB_RESERVED_XENSTORE.</summary>
    public const uint ReservedXenstore = 1;
    /// <summary>DOMID_SELF.</summary>
    public const ushort DOMID_SELF = 0x7ff0;
    /// <summary>INVALID_GRANT_REF.</summary>
    public const uint INVALID_GRANT_REF = uint.MaxValue;
}
