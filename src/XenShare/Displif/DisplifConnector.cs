using DisplifAbi = XenShare.Abi.Displif;
using System.Globalization;
using XenShare.Abi;

namespace XenShare.Displif;

/// <summary>One connector of a vdispl device as the toolstack configured it (spec DP01): its index
/// (the <c>&lt;n&gt;/</c> directory), its <c>resolution</c> and its <c>unique-id</c>.</summary>
/// <param name="Index">The connector's index: 0, 1, ... in the device directory.</param>
/// <param name="Width">The width of the <c>resolution</c> node, in pixels.</param>
/// <param name="Height">The height of the <c>resolution</c> node, in pixels.</param>
/// <param name="UniqueId">The <c>unique-id</c> node (empty when missing).</param>
public sealed record DisplifConnector(int Index, int Width, int Height, string UniqueId)
{
    /// <summary>The largest width or height accepted from a <c>resolution</c> node.</summary>
    public const int MaxDimension = 16384;

    /// <summary>Parses a <c>resolution</c> node ("640x480"); false for anything else (no sign, no
    /// spaces, each side 1..<see cref="MaxDimension"/>).</summary>
    /// <param name="text">The node's text.</param>
    /// <param name="width">The width, or 0.</param>
    /// <param name="height">The height, or 0.</param>
    public static bool TryParseResolution(string? text, out int width, out int height)
    {
        width = height = 0;
        if (text is null) return false;
        int x = text.IndexOf(DisplifAbi.XENDISPL_RESOLUTION_SEPARATOR, StringComparison.Ordinal);
        if (x <= 0) return false;
        if (!int.TryParse(text.AsSpan(0, x), NumberStyles.None, CultureInfo.InvariantCulture, out int w)) return false;
        if (!int.TryParse(text.AsSpan(x + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int h)) return false;
        if (w is < 1 or > MaxDimension || h is < 1 or > MaxDimension) return false;
        (width, height) = (w, h);
        return true;
    }

    /// <summary>The <c>resolution</c> text of this connector ("640x480").</summary>
    public string Resolution => string.Create(CultureInfo.InvariantCulture, $"{Width}x{Height}");
}
