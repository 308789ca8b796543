using System.Globalization;

namespace XenShare;

/// <summary>A grant reference: an index into a granting domain's grant table.</summary>
/// <param name="Value">The raw number.</param>
public readonly record struct GrantRef(uint Value)
{
    /// <summary>The raw number in decimal.</summary>
    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}
