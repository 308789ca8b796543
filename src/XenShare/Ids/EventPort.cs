using System.Globalization;

namespace XenShare;

/// <summary>An event channel port, local to one domain.</summary>
/// <param name="Value">The raw number.</param>
public readonly record struct EventPort(uint Value)
{
    /// <summary>The raw number in decimal.</summary>
    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}
