namespace XenShare.Cli.Json;

/// <summary>The shape of <c>xenshare abi --json</c>: every name maps to its number, in catalog order.</summary>
/// <param name="Ioctls">ioctl name to number.</param>
/// <param name="Structs">struct name to its size and field offsets.</param>
/// <param name="Constants">constant name to value.</param>
internal sealed record AbiJson(
    OrderedDictionary<string, uint> Ioctls,
    OrderedDictionary<string, AbiStructJson> Structs,
    OrderedDictionary<string, long> Constants);

/// <summary>One struct of <see cref="AbiJson"/>.</summary>
/// <param name="Size">sizeof the struct in bytes.</param>
/// <param name="Fields">field name to offset, in declaration order.</param>
internal sealed record AbiStructJson(int Size, OrderedDictionary<string, int> Fields);
