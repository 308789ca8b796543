using XenShare.Api;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Displif;

/// <summary>
/// A display backend daemon's loop: serves every vdispl device the toolstack gives a backend domain, each with
/// its own <see cref="DisplifBackend"/>, as devices appear (<see cref="XenbusBackendWatcher"/>; a toolstack
/// waits for the backend to reach InitWait before it starts the guest, so the server must run first), until
/// cancelled. A device's backend runs until the toolstack removes its directory (the guest went away for good)
/// or sets <c>online</c> to 0; then it is disposed and the caller is told.
/// </summary>
public static class DisplifServer
{
    /// <summary>Serves until <paramref name="cancellationToken"/> is cancelled; then stops every device's run
    /// (a connected frontend is torn down) and disposes them. Never throws for one device's failure: that goes
    /// to <paramref name="ended"/>.</summary>
    /// <param name="client">The backend domain's xenstore connection (not owned).</param>
    /// <param name="process">The backend's process (maps, exports, event channels).</param>
    /// <param name="backend">The backend's domain.</param>
    /// <param name="sinkFor">Makes the display sink of a device (owned by the caller).</param>
    /// <param name="options">Backend settings; null for the defaults.</param>
    /// <param name="started">Told about each device's backend before it runs (subscribe to its events here).</param>
    /// <param name="ended">Told when a device's run ended, with the exception that ended it (null: the device
    /// was removed or taken offline).</param>
    /// <param name="cancellationToken">Stops serving.</param>
    /// <exception cref="XenstoreException">The device directory cannot be watched.</exception>
    public static async Task ServeAsync(XenstoreClient client, IGuestProcess process, DomainId backend,
        Func<XenbusDeviceId, IDisplaySink> sinkFor, DisplifBackendOptions? options,
        Action<XenbusDeviceId, DisplifBackend>? started, Action<XenbusDeviceId, Exception?>? ended,
        CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(process);
        ArgumentNullException.ThrowIfNull(sinkFor);
        // Serves what is there and not served yet, at every change of the directory and whenever a run ends (a
        // device removed and written again while its old run was still ending is found then).
        var runs = new Dictionary<XenbusDeviceId, Task>();
        // A device whose run failed is not served again until its directory goes away and comes back.
        var failed = new System.Collections.Concurrent.ConcurrentDictionary<XenbusDeviceId, bool>();
        var rescan = System.Threading.Channels.Channel.CreateUnbounded<IReadOnlyList<XenbusDeviceId>?>();
        var watching = Task.Run(async () =>
        {
            try
            {
                await foreach (var devices in XenbusBackendWatcher.WatchAsync(client, backend, DeviceType, cancellationToken).ConfigureAwait(false))
                    rescan.Writer.TryWrite(devices);
                rescan.Writer.TryComplete();
            }
            catch (Exception e)
            {
                rescan.Writer.TryComplete(e);
            }
        }, CancellationToken.None);
        try
        {
            await foreach (var snapshot in rescan.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                var devices = snapshot ?? await XenbusBackendWatcher.ListAsync(client, backend, DeviceType, cancellationToken).ConfigureAwait(false);
                foreach (var done in runs.Where(r => r.Value.IsCompleted).Select(r => r.Key).ToList()) runs.Remove(done);
                foreach (var gone in failed.Keys.Where(k => !devices.Contains(k)).ToList()) failed.TryRemove(gone, out _);
                foreach (var id in devices)
                {
                    if (runs.ContainsKey(id) || failed.ContainsKey(id)) continue;   // one backend per device
                    runs.Add(id, ServeOneAsync(client, process, backend, id, sinkFor, options, started, (d, e) =>
                    {
                        if (e is not null) failed[d] = true;
                        ended?.Invoke(d, e);
                        rescan.Writer.TryWrite(null);
                    }, cancellationToken));
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stop serving: the runs see the same token.
        }
        await Task.WhenAll(runs.Values).ConfigureAwait(false);
        await watching.ConfigureAwait(false);
    }

    private static string DeviceType => Abi.Displif.XENDISPL_DRIVER_NAME;

    private static async Task ServeOneAsync(XenstoreClient client, IGuestProcess process, DomainId backend, XenbusDeviceId id,
        Func<XenbusDeviceId, IDisplaySink> sinkFor, DisplifBackendOptions? options,
        Action<XenbusDeviceId, DisplifBackend>? started, Action<XenbusDeviceId, Exception?>? ended, CancellationToken ct)
    {
        await Task.Yield();   // each device on its own continuation: the watch loop goes on at once
        Exception? failure = null;
        bool opened = false;
        try
        {
            var device = await DisplifBackend.OpenAsync(client, process, backend, id.Frontend, id.Id, sinkFor(id), options, ct)
                .ConfigureAwait(false);
            await using (device.ConfigureAwait(false))
            {
                opened = true;
                started?.Invoke(id, device);
                await device.RunAsync(ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Stopped with the server.
        }
        catch (Exception e) when (e is XenstoreException or IOException or XenShareException or InvalidDataException)
        {
            failure = e;
        }
        // A device that was never opened because the server stopped has nothing to report.
        if (opened || failure is not null) ended?.Invoke(id, failure);
    }
}
