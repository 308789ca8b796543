using System.Globalization;

namespace XenShare;

/// <summary>A Xen domain id (domid_t).</summary>
/// <param name="Value">The raw number.</param>
public readonly record struct DomainId(ushort Value)
{
    /// <summary>The raw number in decimal.</summary>
    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Domain 0, the control domain.</summary>
    public static DomainId Dom0 => new(0);

    /// <summary>DOMID_SELF (0x7ff0).</summary>
    public static DomainId Self => new(0x7ff0);
}
