using System.Globalization;

namespace XenShare;

/// <summary>A guest frame number (GFN): a page of a domain's pseudo-physical address space.</summary>
/// <param name="Value">The raw number.</param>
public readonly record struct GuestFrame(ulong Value)
{
    /// <summary>The raw number in decimal.</summary>
    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}
