using System.Collections.ObjectModel;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Abi;

// The one place that lists what the C# ABI mirror claims about the UAPI headers: every ioctl number,
// every struct (size and field offsets) and every integer constant. AbiHeaderTests compiles a C
// program generated from this catalog against the system headers and compares value by value, and
// `xenshare abi` prints it. The type list is explicit (trim/AOT friendly: no Assembly.GetTypes());
// a test checks by reflection that it covers every struct and ioctl class of the namespace.

/// <summary>An ioctl number of a UAPI header, as computed by the C# mirror.</summary>
/// <param name="Name">The C macro name, e.g. <c>IOCTL_GNTDEV_MAP_GRANT_REF</c>.</param>
/// <param name="Header">The header that defines it, e.g. <c>xen/gntdev.h</c>.</param>
/// <param name="Value">The encoded request number.</param>
public sealed record AbiIoctl(string Name, string Header, uint Value);

/// <summary>An integer constant of a UAPI header, as defined by the C# mirror.</summary>
/// <param name="Name">The C macro name, e.g. <c>UNMAP_NOTIFY_CLEAR_BYTE</c>.</param>
/// <param name="Header">The header that defines it.</param>
/// <param name="Value">The value.</param>
public sealed record AbiConstant(string Name, string Header, long Value);

/// <summary>A string constant of a header (a xenstore field name, a protocol version), as defined by the C# mirror.</summary>
/// <param name="Name">The C macro name, e.g. <c>XENDISPL_FIELD_REQ_RING_REF</c>.</param>
/// <param name="Header">The header that defines it.</param>
/// <param name="Value">The string.</param>
public sealed record AbiStringConstant(string Name, string Header, string Value);

/// <summary>A top-level field of an ABI struct.</summary>
/// <param name="Name">The C field name (the C# <c>@</c> of <c>@ref</c> stripped).</param>
/// <param name="Offset">Byte offset from the start of the struct.</param>
/// <param name="Size">Size of the field in bytes (one element for the trailing one-element arrays; the whole
/// array for a fixed buffer such as <c>reserved[5]</c>).</param>
public sealed record AbiField(string Name, int Offset, int Size);

/// <summary>A struct (or union) of a UAPI header, as laid out by the C# mirror.</summary>
/// <param name="Name">The C name without the <c>struct</c> keyword, e.g. <c>ioctl_gntdev_map_grant_ref</c>
/// (for a type that is anonymous in C, the C# name).</param>
/// <param name="Header">The header that defines it.</param>
/// <param name="Size">Size in bytes.</param>
/// <param name="Fields">The top-level fields, ordered by offset (union members share an offset).</param>
/// <param name="AnonymousPath">
/// Null for a named C struct. For a type that is anonymous in C, the way to reach it: a named struct
/// followed by a member designator, e.g. <c>gntdev_grant_copy_segment.source</c> for the source/dest
/// union of <c>struct gntdev_grant_copy_segment</c>.
/// </param>
public sealed record AbiStruct(string Name, string Header, int Size, IReadOnlyList<AbiField> Fields, string? AnonymousPath)
{
    /// <summary>True when the type is a C union (all fields at offset 0 and more than one field); a named one
    /// is reached in C as <c>union name</c>.</summary>
    public bool IsUnion => Fields.Count > 1 && Fields.All(f => f.Offset == 0);
}

/// <summary>
/// Everything the C# ABI mirror (<see cref="GntDevIoctl"/>, <see cref="GntAllocIoctl"/>,
/// <see cref="EvtChnIoctl"/>, <see cref="DmaBufIoctl"/> and the structs beside them) says about the
/// Linux UAPI headers, in a stable order: headers in the order gntdev, gntalloc, evtchn, dma-buf, dma-heap, xs_wire, xenbus, displif;
/// ioctls by command number then name; structs in header order; fields by offset; constants by name.
/// </summary>
public static class AbiCatalog
{
    /// <summary>Header name of <c>xen/gntdev.h</c>.</summary>
    public const string GntDevHeader = "xen/gntdev.h";
    /// <summary>Header name of <c>xen/gntalloc.h</c>.</summary>
    public const string GntAllocHeader = "xen/gntalloc.h";
    /// <summary>Header name of <c>xen/evtchn.h</c>.</summary>
    public const string EvtChnHeader = "xen/evtchn.h";
    /// <summary>Header name of <c>linux/dma-buf.h</c>.</summary>
    public const string DmaBufHeader = "linux/dma-buf.h";

    /// <summary>Header of <see cref="DmaHeapIoctl"/>.</summary>
    public const string DmaHeapHeader = "linux/dma-heap.h";

    /// <summary>Header of <see cref="XsWire"/> (the xenstore wire protocol; Debian package libxen-dev).</summary>
    public const string XsWireHeader = "xen/io/xs_wire.h";

    /// <summary>Header of <see cref="XenbusIo"/> (the xenbus device states; Debian package libxen-dev).</summary>
    public const string XenbusHeader = "xen/io/xenbus.h";

    /// <summary>Header of <see cref="Displif"/> (the PV display protocol and its ring types; Debian package libxen-dev).</summary>
    public const string DisplifHeader = "xen/io/displif.h";

    /// <summary>The headers covered, in catalog order.</summary>
    public static IReadOnlyList<string> Headers { get; } =
        new ReadOnlyCollection<string>([GntDevHeader, GntAllocHeader, EvtChnHeader, DmaBufHeader, DmaHeapHeader, XsWireHeader, XenbusHeader, DisplifHeader]);

    /// <summary>Every ioctl number (the static readonly <see cref="uint"/> fields of the four ioctl classes).</summary>
    public static IReadOnlyList<AbiIoctl> Ioctls { get; }

    /// <summary>Every integer constant (the integral <c>const</c> fields of the four ioctl classes).</summary>
    public static IReadOnlyList<AbiConstant> Constants { get; }

    /// <summary>Every string constant (the <c>const string</c> fields of the classes), by header then name.</summary>
    public static IReadOnlyList<AbiStringConstant> StringConstants { get; }

    /// <summary>Every ABI struct with its size and top-level field offsets.</summary>
    public static IReadOnlyList<AbiStruct> Structs { get; }

    /// <summary>The classes whose fields are the ioctl numbers and constants, one per header.</summary>
    public static IReadOnlyList<Type> IoctlClasses { get; } =
        new ReadOnlyCollection<Type>([typeof(GntDevIoctl), typeof(GntAllocIoctl), typeof(EvtChnIoctl), typeof(DmaBufIoctl), typeof(DmaHeapIoctl), typeof(XsWire), typeof(XenbusIo), typeof(Displif)]);

    static AbiCatalog()
    {
        var ioctls = new List<AbiIoctl>();
        var constants = new List<AbiConstant>();
        var strings = new List<AbiStringConstant>();
        AddFields(typeof(GntDevIoctl), GntDevHeader, ioctls, constants, strings);
        AddFields(typeof(GntAllocIoctl), GntAllocHeader, ioctls, constants, strings);
        AddFields(typeof(EvtChnIoctl), EvtChnHeader, ioctls, constants, strings);
        AddFields(typeof(DmaBufIoctl), DmaBufHeader, ioctls, constants, strings);
        AddFields(typeof(DmaHeapIoctl), DmaHeapHeader, ioctls, constants, strings);
        AddFields(typeof(XsWire), XsWireHeader, ioctls, constants, strings);
        AddFields(typeof(XenbusIo), XenbusHeader, ioctls, constants, strings);
        AddFields(typeof(Displif), DisplifHeader, ioctls, constants, strings);
        Ioctls = ioctls.AsReadOnly();
        Constants = constants.AsReadOnly();
        StringConstants = strings.AsReadOnly();

        // Nested types come before the structs that contain them (field sizes are looked up here).
        var structs = new List<AbiStruct>();
        Add<ioctl_gntdev_grant_ref>(structs, GntDevHeader);
        Add<ioctl_gntdev_map_grant_ref>(structs, GntDevHeader);
        Add<ioctl_gntdev_unmap_grant_ref>(structs, GntDevHeader);
        Add<ioctl_gntdev_get_offset_for_vaddr>(structs, GntDevHeader);
        Add<ioctl_gntdev_set_max_grants>(structs, GntDevHeader);
        Add<ioctl_gntdev_unmap_notify>(structs, GntDevHeader);
        Add<gntdev_grant_copy_foreign>(structs, GntDevHeader, "gntdev_grant_copy_segment.source.foreign");
        Add<gntdev_grant_copy_ptr>(structs, GntDevHeader, "gntdev_grant_copy_segment.source");
        Add<gntdev_grant_copy_segment>(structs, GntDevHeader);
        Add<ioctl_gntdev_grant_copy>(structs, GntDevHeader);
        Add<ioctl_gntdev_dmabuf_exp_from_refs>(structs, GntDevHeader);
        Add<ioctl_gntdev_dmabuf_exp_wait_released>(structs, GntDevHeader);
        Add<ioctl_gntdev_dmabuf_imp_to_refs>(structs, GntDevHeader);
        Add<ioctl_gntdev_dmabuf_imp_release>(structs, GntDevHeader);
        Add<ioctl_gntalloc_alloc_gref>(structs, GntAllocHeader);
        Add<ioctl_gntalloc_dealloc_gref>(structs, GntAllocHeader);
        Add<ioctl_gntalloc_unmap_notify>(structs, GntAllocHeader);
        Add<ioctl_evtchn_bind_virq>(structs, EvtChnHeader);
        Add<ioctl_evtchn_bind_interdomain>(structs, EvtChnHeader);
        Add<ioctl_evtchn_bind_unbound_port>(structs, EvtChnHeader);
        Add<ioctl_evtchn_unbind>(structs, EvtChnHeader);
        Add<ioctl_evtchn_notify>(structs, EvtChnHeader);
        Add<ioctl_evtchn_restrict_domid>(structs, EvtChnHeader);
        Add<dma_buf_sync>(structs, DmaBufHeader);
        Add<dma_buf_export_sync_file>(structs, DmaBufHeader);
        Add<dma_buf_import_sync_file>(structs, DmaBufHeader);
        Add<dma_heap_allocation_data>(structs, DmaHeapHeader);
        Add<xsd_sockmsg>(structs, XsWireHeader);
        Add<xendispl_dbuf_create_req>(structs, DisplifHeader);
        Add<xendispl_page_directory>(structs, DisplifHeader);
        Add<xendispl_dbuf_destroy_req>(structs, DisplifHeader);
        Add<xendispl_fb_attach_req>(structs, DisplifHeader);
        Add<xendispl_fb_detach_req>(structs, DisplifHeader);
        Add<xendispl_set_config_req>(structs, DisplifHeader);
        Add<xendispl_page_flip_req>(structs, DisplifHeader);
        Add<xendispl_get_edid_req>(structs, DisplifHeader);
        Add<xendispl_get_edid_resp>(structs, DisplifHeader);
        Add<xendispl_pg_flip_evt>(structs, DisplifHeader);
        Add<xendispl_req_op>(structs, DisplifHeader, "xendispl_req.op");
        Add<xendispl_req>(structs, DisplifHeader);
        Add<xendispl_resp_op>(structs, DisplifHeader, "xendispl_resp.op");
        Add<xendispl_resp>(structs, DisplifHeader);
        Add<xendispl_evt_op>(structs, DisplifHeader, "xendispl_evt.op");
        Add<xendispl_evt>(structs, DisplifHeader);
        Add<xen_displif_sring_entry>(structs, DisplifHeader);
        Add<xen_displif_sring>(structs, DisplifHeader);
        Add<xendispl_event_page>(structs, DisplifHeader);
        Structs = structs.AsReadOnly();
    }

    /// <summary>The struct with the given C name, or null.</summary>
    /// <param name="name">C name without the <c>struct</c> keyword.</param>
    public static AbiStruct? FindStruct(string name) => Structs.FirstOrDefault(s => s.Name == name);

    /// <summary>The ioctl with the given C name, or null.</summary>
    /// <param name="name">C macro name.</param>
    public static AbiIoctl? FindIoctl(string name) => Ioctls.FirstOrDefault(i => i.Name == name);

    /// <summary>The string constant with the given C name, or null.</summary>
    /// <param name="name">C macro name.</param>
    public static AbiStringConstant? FindStringConstant(string name) => StringConstants.FirstOrDefault(c => c.Name == name);

    /// <summary>The constant with the given C name, or null.</summary>
    /// <param name="name">C macro name.</param>
    public static AbiConstant? FindConstant(string name) => Constants.FirstOrDefault(c => c.Name == name);

    /// <summary>The C field name of a C# field name: a leading <c>@</c> (as in <c>@ref</c>) is not part of it.</summary>
    /// <param name="name">A C# field name (reflection already drops the <c>@</c>; source text does not).</param>
    public static string CFieldName(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return name.StartsWith('@') ? name[1..] : name;
    }

    private static void AddFields(
        [DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicFields)] Type type,
        string header, List<AbiIoctl> ioctls, List<AbiConstant> constants, List<AbiStringConstant> strings)
    {
        var newStrings = new List<AbiStringConstant>();
        var newIoctls = new List<AbiIoctl>();
        var newConstants = new List<AbiConstant>();
        foreach (FieldInfo field in type.GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            if (field.IsInitOnly && field.FieldType == typeof(uint))
            {
                newIoctls.Add(new AbiIoctl(field.Name, header, (uint)field.GetValue(null)!));
            }
            else if (field.IsLiteral && ToInt64(field.GetRawConstantValue()) is long value)
            {
                newConstants.Add(new AbiConstant(field.Name, header, value));
            }
            else if (field.IsLiteral && field.GetRawConstantValue() is string text)
            {
                newStrings.Add(new AbiStringConstant(field.Name, header, text));
            }
        }

        ioctls.AddRange(newIoctls.OrderBy(i => Ioc.NrOf(i.Value)).ThenBy(i => i.Name, StringComparer.Ordinal));
        constants.AddRange(newConstants.OrderBy(c => c.Name, StringComparer.Ordinal));
        strings.AddRange(newStrings.OrderBy(c => c.Name, StringComparer.Ordinal));
    }

    private static long? ToInt64(object? value) => value switch
    {
        byte v => v,
        sbyte v => v,
        char v => v,
        short v => v,
        ushort v => v,
        int v => v,
        uint v => v,
        long v => v,
        ulong v => checked((long)v),
        _ => null,
    };

    private static void Add<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicFields | DynamicallyAccessedMemberTypes.NonPublicFields)] T>(
        List<AbiStruct> structs, string header, string? anonymousPath = null)
        where T : struct
    {
        var fields = new List<AbiField>();
        foreach (FieldInfo field in typeof(T).GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance))
        {
            int offset = (int)Marshal.OffsetOf<T>(field.Name);
            // A fixed buffer (reserved[5]) is a compiler-made struct; its attribute gives element type and length.
            int size = field.GetCustomAttribute<FixedBufferAttribute>() is { } buffer
                ? buffer.Length * FieldSize(buffer.ElementType, structs)
                : FieldSize(field.FieldType, structs);
            fields.Add(new AbiField(CFieldName(field.Name), offset, size));
        }

        // OrderBy is stable: union members keep their declaration order.
        var ordered = fields.OrderBy(f => f.Offset).ToList();
        structs.Add(new AbiStruct(typeof(T).Name, header, Unsafe.SizeOf<T>(), ordered.AsReadOnly(), anonymousPath));
    }

    private static int FieldSize(Type type, List<AbiStruct> known)
    {
        if (type == typeof(byte) || type == typeof(sbyte)) return 1;
        if (type == typeof(ushort) || type == typeof(short) || type == typeof(char)) return 2;
        if (type == typeof(uint) || type == typeof(int)) return 4;
        if (type == typeof(ulong) || type == typeof(long)) return 8;
        if (type == typeof(nint) || type == typeof(nuint)) return IntPtr.Size;
        AbiStruct? nested = known.FirstOrDefault(s => s.Name == type.Name);
        return nested?.Size ?? throw new InvalidOperationException(string.Format(
            CultureInfo.InvariantCulture, "ABI field type {0} is neither a primitive nor a struct listed before its container.", type.Name));
    }
}
