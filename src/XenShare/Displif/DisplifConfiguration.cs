using System.Globalization;
using XenShare.Xenstore;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Displif;

/// <summary>What the toolstack writes for a vdispl device in the frontend's directory (DP01): <c>be-alloc</c> and
/// per connector <c>&lt;n&gt;/resolution</c> and <c>&lt;n&gt;/unique-id</c>, connectors 0, 1, ... until one is
/// missing. Read by both ends.</summary>
internal static class DisplifConfiguration
{
    /// <summary>The connectors and whether the backend allocates the buffers.</summary>
    /// <exception cref="InvalidDataException">A resolution is not WxH, or there is no connector.</exception>
    public static async Task<(IReadOnlyList<DisplifConnector> Connectors, bool BackendAllocates)> ReadAsync(
        XenstoreClient client, string frontendPath, CancellationToken ct)
    {
        string? beAlloc = await client.TryReadStringAsync(frontendPath + "/" + DisplifAbi.XENDISPL_FIELD_BE_ALLOC, ct).ConfigureAwait(false);
        var connectors = new List<DisplifConnector>();
        for (int n = 0; n < 64; n++)
        {
            string dir = frontendPath + "/" + n.ToString(CultureInfo.InvariantCulture) + "/";
            string? resolution = await client.TryReadStringAsync(dir + DisplifAbi.XENDISPL_FIELD_RESOLUTION, ct).ConfigureAwait(false);
            if (resolution is null) break;
            if (!DisplifConnector.TryParseResolution(resolution.Trim(), out int w, out int h))
                throw new InvalidDataException($"{dir}{DisplifAbi.XENDISPL_FIELD_RESOLUTION} is '{resolution}', not WxH");
            string uniqueId = await client.TryReadStringAsync(dir + DisplifAbi.XENDISPL_FIELD_UNIQUE_ID, ct).ConfigureAwait(false) ?? "";
            connectors.Add(new DisplifConnector(n, w, h, uniqueId));
        }
        if (connectors.Count == 0) throw new InvalidDataException($"{frontendPath} has no connector (0/{DisplifAbi.XENDISPL_FIELD_RESOLUTION})");
        return (connectors, beAlloc is not null && beAlloc.Trim() == "1");
    }
}
