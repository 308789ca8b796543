using System.Globalization;
using System.Runtime.CompilerServices;
using XenShare.Abi;
using XenShare.Xenstore;

namespace XenShare.Xenbus;

/// <summary>
/// Finds the devices a toolstack gives a backend: watches <c>/local/domain/&lt;backend&gt;/backend/&lt;type&gt;</c>
/// and reports each <c>&lt;frontend&gt;/&lt;id&gt;</c> directory when it appears (XB01, XB03), as a backend
/// daemon must do (the toolstack writes the directories, then waits for the backend to reach InitWait). A device
/// whose directory goes away and comes back (a new domain, a re-plugged device) is reported again.
/// </summary>
public static class XenbusBackendWatcher
{
    /// <summary>Reports every device of <paramref name="type"/> given to <paramref name="backend"/>: those already
    /// there first, then new ones as the toolstack writes them, until cancelled. The enumeration is the caller's
    /// to end; each device is typically served with <see cref="XenbusBackendDevice.OpenAsync"/>.</summary>
    /// <param name="client">The backend domain's xenstore connection (not owned).</param>
    /// <param name="backend">The backend's domain.</param>
    /// <param name="type">The device type, e.g. <c>vdispl</c>.</param>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    /// <exception cref="XenstoreException">The watch cannot be set.</exception>
    public static async IAsyncEnumerable<XenbusDeviceId> WatchAsync(XenstoreClient client, DomainId backend, string type,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrEmpty(type);
        string root = "/local/domain/" + backend.Value.ToString(CultureInfo.InvariantCulture) + "/backend/" + type;
        string token = "xenshare-backend-" + type + "-" + Guid.NewGuid().ToString("N");
        var known = new HashSet<XenbusDeviceId>();
        // XS05: the watch fires once when set (so devices already there are found), then for every change below.
        await foreach (var _ in client.WatchAsync(root, token, cancellationToken).ConfigureAwait(false))
        {
            var present = await ListAsync(client, root, cancellationToken).ConfigureAwait(false);
            known.IntersectWith(present);   // gone: reported again if it comes back
            foreach (var device in present)
                if (known.Add(device)) yield return device;
        }
    }

    private static async Task<List<XenbusDeviceId>> ListAsync(XenstoreClient client, string root, CancellationToken ct)
    {
        var found = new List<XenbusDeviceId>();
        foreach (string fe in await DirectoryOrEmptyAsync(client, root, ct).ConfigureAwait(false))
        {
            if (!ushort.TryParse(fe, NumberStyles.None, CultureInfo.InvariantCulture, out ushort domid)) continue;
            foreach (string id in await DirectoryOrEmptyAsync(client, root + "/" + fe, ct).ConfigureAwait(false))
            {
                if (!int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out int devid)) continue;
                // The toolstack writes a device's directory in one transaction; its state node marks it whole.
                if (await client.TryReadStringAsync(root + "/" + fe + "/" + id + "/state", ct).ConfigureAwait(false) is null) continue;
                found.Add(new XenbusDeviceId(new DomainId(domid), devid));
            }
        }
        return found;
    }

    private static async Task<IReadOnlyList<string>> DirectoryOrEmptyAsync(XenstoreClient client, string path, CancellationToken ct)
    {
        try
        {
            return await client.DirectoryAsync(path, ct).ConfigureAwait(false);
        }
        catch (XenstoreException e) when (e.Errno == Errno.ENOENT)
        {
            return [];
        }
    }
}
