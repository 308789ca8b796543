using System.Globalization;

namespace XenShare;

/// <summary>A machine frame number (MFN): a page of the host's machine memory.</summary>
/// <param name="Value">The raw number.</param>
public readonly record struct MachineFrame(ulong Value)
{
    /// <summary>The raw number in decimal.</summary>
    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}
