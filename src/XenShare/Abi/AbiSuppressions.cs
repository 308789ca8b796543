using System.Diagnostics.CodeAnalysis;

// The Abi namespace mirrors the C UAPI headers and keeps their names (ioctl_gntdev_map_grant_ref,
// IOCTL_GNTDEV_MAP_GRANT_REF, GNTST_okay) so that a reader can grep the header: naming and field
// rules do not apply there.
[assembly: SuppressMessage("Naming", "CA1707:Identifiers should not contain underscores", Scope = "namespaceanddescendants", Target = "~N:XenShare.Abi")]
[assembly: SuppressMessage("Naming", "CA1708", Scope = "namespaceanddescendants", Target = "~N:XenShare.Abi")]
[assembly: SuppressMessage("Design", "CA1051:Do not declare visible instance fields", Scope = "namespaceanddescendants", Target = "~N:XenShare.Abi")]
[assembly: SuppressMessage("Performance", "CA1815:Override equals and operator equals on value types", Scope = "namespaceanddescendants", Target = "~N:XenShare.Abi")]
[assembly: SuppressMessage("Naming", "CA1720:Identifier contains type name", Scope = "namespaceanddescendants", Target = "~N:XenShare.Abi")]
[assembly: SuppressMessage("Naming", "CA1707:Identifiers should not contain underscores", Scope = "namespaceanddescendants", Target = "~N:XenShare.Devices",
    Justification = "The emulated devices' ioctl ABI keeps C names, like XenShare.Abi, so a C program and a reader can grep them.")]
[assembly: SuppressMessage("Design", "CA1051:Do not declare visible instance fields", Scope = "namespaceanddescendants", Target = "~N:XenShare.Devices",
    Justification = "ABI structs: fields in C order.")]
[assembly: SuppressMessage("Performance", "CA1815:Override equals and operator equals on value types", Scope = "namespaceanddescendants", Target = "~N:XenShare.Devices",
    Justification = "ABI structs are byte layouts, never compared.")]
