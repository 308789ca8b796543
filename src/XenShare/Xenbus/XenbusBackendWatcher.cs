using System.Globalization;
using System.Runtime.CompilerServices;
using XenShare.Abi;
using XenShare.Xenstore;

namespace XenShare.Xenbus;

/// <summary>
/// Finds the devices a toolstack gives a backend (XB01, XB03): the <c>&lt;frontend&gt;/&lt;id&gt;</c> directories
/// under <c>/local/domain/&lt;backend&gt;/backend/&lt;type&gt;</c> whose <c>state</c> node exists (the toolstack
/// writes a device's directory in one transaction) and whose <c>online</c> is not 0 (a device being removed). A backend daemon serves each device it does not serve yet;
/// a toolstack waits for the backend to reach InitWait before it starts the guest.
/// </summary>
public static class XenbusBackendWatcher
{
    /// <summary>The devices there now.</summary>
    /// <param name="client">The backend domain's xenstore connection (not owned).</param>
    /// <param name="backend">The backend's domain.</param>
    /// <param name="type">The device type, e.g. <c>vdispl</c>.</param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    public static async Task<IReadOnlyList<XenbusDeviceId>> ListAsync(XenstoreClient client, DomainId backend, string type,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrEmpty(type);
        string root = RootOf(backend, type);
        var found = new List<XenbusDeviceId>();
        foreach (string fe in await DirectoryOrEmptyAsync(client, root, cancellationToken).ConfigureAwait(false))
        {
            if (!ushort.TryParse(fe, NumberStyles.None, CultureInfo.InvariantCulture, out ushort domid)) continue;
            foreach (string id in await DirectoryOrEmptyAsync(client, root + "/" + fe, cancellationToken).ConfigureAwait(false))
            {
                if (!int.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out int devid)) continue;
                string dir = root + "/" + fe + "/" + id;
                if (await client.TryReadStringAsync(dir + "/state", cancellationToken).ConfigureAwait(false) is null) continue;
                // A device the toolstack took offline (online = 0: it is being removed) is not served again.
                if ((await client.TryReadStringAsync(dir + "/online", cancellationToken).ConfigureAwait(false))?.Trim() == "0") continue;
                found.Add(new XenbusDeviceId(new DomainId(domid), devid));
            }
        }
        return found;
    }

    /// <summary>The devices there at every change of the type's directory: once when the watch is set (those
    /// already there), then after each change, until cancelled. Each item is the whole set at that moment, so a
    /// caller that serves what it does not serve yet misses nothing, also when a device is removed and written
    /// again quickly (a re-plug).</summary>
    /// <param name="client">The backend domain's xenstore connection (not owned).</param>
    /// <param name="backend">The backend's domain.</param>
    /// <param name="type">The device type, e.g. <c>vdispl</c>.</param>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    /// <exception cref="XenstoreException">The watch cannot be set.</exception>
    public static async IAsyncEnumerable<IReadOnlyList<XenbusDeviceId>> WatchAsync(XenstoreClient client, DomainId backend, string type,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentException.ThrowIfNullOrEmpty(type);
        string token = "xenshare-backend-" + type + "-" + Guid.NewGuid().ToString("N");
        // XS05: the watch fires once when set (so devices already there are found), then for every change below.
        await foreach (var _ in client.WatchAsync(RootOf(backend, type), token, cancellationToken).ConfigureAwait(false))
            yield return await ListAsync(client, backend, type, cancellationToken).ConfigureAwait(false);
    }

    private static string RootOf(DomainId backend, string type) =>
        "/local/domain/" + backend.Value.ToString(CultureInfo.InvariantCulture) + "/backend/" + type;

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
