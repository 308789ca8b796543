using System.Globalization;
using XenShare.Abi;
using XenShare.Xenstore;

namespace XenShare.Xenbus;

/// <summary>
/// The backend end of one PV device <c>&lt;type&gt;/&lt;id&gt;</c> between a frontend domain and this backend
/// domain (spec XB01-XB03), over a <see cref="XenstoreClient"/>: the paths the toolstack wrote, the
/// <c>state</c> nodes of both ends, and <see cref="RunAsync"/>, the backend's walk of the xenbus handshake
/// around a protocol's <see cref="IXenbusBackendHandler"/>.
/// </summary>
/// <remarks>
/// <para>The walk (XB02): Initialising, the handler publishes, InitWait; when the frontend reaches
/// Initialised (or Connected) the handler connects, then Connected. The frontend going to Closing or Closed
/// (or back to Unknown, Initialising or InitWait: a restarted driver), its directory vanishing, or its
/// domain dying make the handler disconnect - exactly once per connect - and the device offers InitWait
/// again for the next frontend instance, or switches to Closed and ends the run when the toolstack set
/// <c>online</c> to 0 (a missing <c>online</c> counts as 0, as in Linux). With <c>online</c> 0 while
/// connected, the device switches to Closing to ask the frontend to close first. Removing the backend
/// directory ends the run too (after a disconnect).</para>
/// <para>Watches (XB03): the backend directory, the frontend's <c>state</c> and <c>@releaseDomain</c>
/// (optional: a domain that may not watch it relies on the frontend directory vanishing). The device
/// never trusts what a peer writes: an unparsable state reads as Unknown, and every wait ends with the
/// caller's cancellation. Errors of xenstore itself surface as <see cref="XenstoreException"/>.</para>
/// <para>The device does not own the client; dispose the device before the client.</para>
/// <para>Lock: <c>_gate</c> guards <c>_run</c> and <c>_disposed</c> only; it is a leaf, never held across an
/// await, a xenstore request or a handler call (docs/design.md, lock order).</para>
/// </remarks>
public sealed class XenbusBackendDevice : IAsyncDisposable
{
    private static readonly XenbusState[] LiveFrontendStates =
        [XenbusState.Initialised, XenbusState.Connected, XenbusState.Reconfiguring, XenbusState.Reconfigured];

    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _lifetime = new();
    private Task? _run;
    private bool _disposed;
    private int _state;
    private int _connected;

    private XenbusBackendDevice(XenstoreClient client, DomainId backend, DomainId frontend, string type, int id, string frontendPath)
    {
        Client = client;
        BackendId = backend;
        FrontendId = frontend;
        DeviceType = type;
        DeviceId = id;
        BackendPath = XenbusNodes.BackendPath(backend, frontend, type, id);
        FrontendPath = frontendPath;
    }

    /// <summary>The XB01 backend directory of a device: <c>/local/domain/&lt;backend&gt;/backend/&lt;type&gt;/&lt;frontend&gt;/&lt;id&gt;</c>.</summary>
    /// <param name="backend">The backend's domain.</param>
    /// <param name="frontend">The frontend's domain.</param>
    /// <param name="type">The device type ("vdispl").</param>
    /// <param name="id">The device id (0, 1, ...).</param>
    /// <exception cref="ArgumentException">The type is empty or not one path element, or the id is negative.</exception>
    public static string PathOf(DomainId backend, DomainId frontend, string type, int id)
    {
        XenbusNodes.ValidateDevice(type, id);
        return XenbusNodes.BackendPath(backend, frontend, type, id);
    }

    /// <summary>Opens the backend end of a device whose directories the toolstack wrote (XB01): reads the
    /// backend directory's <c>frontend</c> and <c>frontend-id</c> nodes.</summary>
    /// <param name="client">The backend domain's xenstore connection (not owned).</param>
    /// <param name="backend">This (the backend's) domain.</param>
    /// <param name="frontend">The frontend's domain.</param>
    /// <param name="type">The device type ("vdispl").</param>
    /// <param name="id">The device id.</param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <exception cref="XenstoreException">A node is missing (ENOENT) or unreadable (EACCES).</exception>
    /// <exception cref="InvalidDataException"><c>frontend-id</c> is not <paramref name="frontend"/> or
    /// <c>frontend</c> is not a path in the frontend's home.</exception>
    public static async Task<XenbusBackendDevice> OpenAsync(
        XenstoreClient client, DomainId backend, DomainId frontend, string type, int id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        string path = PathOf(backend, frontend, type, id);
        string frontendPath = await client.ReadStringAsync(path + "/frontend", cancellationToken).ConfigureAwait(false);
        string frontendId = await client.ReadStringAsync(path + "/frontend-id", cancellationToken).ConfigureAwait(false);
        if (!ushort.TryParse(frontendId, NumberStyles.None, CultureInfo.InvariantCulture, out ushort fe) || fe != frontend.Value)
            throw new InvalidDataException($"{path}/frontend-id is '{frontendId}', not {frontend.Value}");
        if (!IsPathIn(frontendPath, frontend))
            throw new InvalidDataException($"{path}/frontend is '{frontendPath}', not a path in the frontend's home");
        return new XenbusBackendDevice(client, backend, frontend, type, id, frontendPath);
    }

    internal static bool IsPathIn(string path, DomainId domain)
    {
        string home = XenbusNodes.Home(domain) + "/";
        return path.Length > home.Length && path.StartsWith(home, StringComparison.Ordinal)
            && !path.EndsWith('/') && !path.Contains("//", StringComparison.Ordinal) && !path.Contains('\0', StringComparison.Ordinal)
            && path.Length <= XsWire.XENSTORE_ABS_PATH_MAX - 64;
    }

    /// <summary>The xenstore connection the device uses (handlers read and write the device's nodes with it).</summary>
    public XenstoreClient Client { get; }

    /// <summary>The backend's (this) domain.</summary>
    public DomainId BackendId { get; }

    /// <summary>The frontend's domain.</summary>
    public DomainId FrontendId { get; }

    /// <summary>The device type ("vdispl").</summary>
    public string DeviceType { get; }

    /// <summary>The device id.</summary>
    public int DeviceId { get; }

    /// <summary>The backend directory (XB01), no trailing slash.</summary>
    public string BackendPath { get; }

    /// <summary>The frontend directory, as the toolstack wrote it in the backend's <c>frontend</c> node.</summary>
    public string FrontendPath { get; }

    /// <summary>The state this device last wrote (<see cref="XenbusState.Unknown"/> before the first write).</summary>
    public XenbusState State => (XenbusState)Volatile.Read(ref _state);

    /// <summary>Whether <see cref="RunAsync"/> is between a handler's connect and its disconnect.</summary>
    public bool IsConnected => Volatile.Read(ref _connected) != 0;

    /// <summary>The exception of the last <see cref="IXenbusBackendHandler.ConnectAsync"/> that failed during
    /// <see cref="RunAsync"/> (the run goes on after one), or null.</summary>
    public Exception? LastConnectFailure { get; private set; }

    /// <summary>Reads the backend's <c>state</c> node (Unknown when missing or unparsable).</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<XenbusState> ReadStateAsync(CancellationToken cancellationToken = default) =>
        await XenbusNodes.TryReadStateAsync(Client, BackendPath, cancellationToken).ConfigureAwait(false) ?? XenbusState.Unknown;

    /// <summary>Reads the frontend's <c>state</c> node (Unknown when missing or unparsable).</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<XenbusState> ReadFrontendStateAsync(CancellationToken cancellationToken = default) =>
        await XenbusNodes.TryReadStateAsync(Client, FrontendPath, cancellationToken).ConfigureAwait(false) ?? XenbusState.Unknown;

    /// <summary>Reads the backend's <c>online</c> node: true only for "1" (missing counts as 0).</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<bool> ReadOnlineAsync(CancellationToken cancellationToken = default) =>
        IsOnline(await Client.TryReadStringAsync(BackendPath + "/online", cancellationToken).ConfigureAwait(false));

    private static bool IsOnline(string? text) => text is not null && text.AsSpan().Trim().SequenceEqual("1");

    /// <summary>Writes <paramref name="state"/> into the backend's <c>state</c> node, in a transaction that
    /// checks the node still exists (a removed device directory is never recreated). <see cref="RunAsync"/>
    /// drives the state itself; call this only for a walk of your own.</summary>
    /// <returns>False when the node was gone (nothing written).</returns>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<bool> SwitchStateAsync(XenbusState state, CancellationToken cancellationToken = default)
    {
        bool written = await XenbusNodes.SwitchAsync(Client, BackendPath, state, cancellationToken).ConfigureAwait(false);
        if (written) Volatile.Write(ref _state, (int)state);
        return written;
    }

    /// <summary>The frontend's state as a stream (a watch on its <c>state</c> node): the current value once the
    /// watch is registered, then each change to a different value (a vanished node is Unknown). The watch is
    /// removed when the enumeration ends.</summary>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    public IAsyncEnumerable<XenbusState> WatchFrontendStateAsync(CancellationToken cancellationToken = default) =>
        XenbusNodes.WatchStateAsync(Client, FrontendPath, cancellationToken);

    /// <summary>Waits until the frontend's state satisfies <paramref name="predicate"/> (checked on the current
    /// value first) and returns it.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task<XenbusState> WaitForFrontendStateAsync(Func<XenbusState, bool> predicate, CancellationToken cancellationToken = default) =>
        XenbusNodes.WaitForStateAsync(Client, FrontendPath, predicate, cancellationToken);

    /// <summary>
    /// Runs the backend's walk of the handshake (XB02, XB03; see the type's remarks) with
    /// <paramref name="handler"/> until the device is closed for good: <c>online</c> is 0 and no frontend is
    /// connected (the device then writes Closed), or the backend directory was removed. A frontend that
    /// closes, restarts, vanishes or dies only ends a connection; the run offers InitWait again.
    /// </summary>
    /// <remarks>When the run ends by cancellation or disposal of the device, a connected handler is
    /// disconnected (<see cref="XenbusDisconnectReason.Stopped"/>) and the device writes Closed if its node
    /// still exists (best effort), then the run throws <see cref="OperationCanceledException"/>. When
    /// xenstore fails, a connected handler is disconnected and the run throws that failure. One run at a
    /// time.</remarks>
    /// <param name="handler">The protocol.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    /// <exception cref="InvalidOperationException">Another run of this device is in progress.</exception>
    /// <exception cref="ObjectDisposedException">The device was disposed.</exception>
    /// <exception cref="OperationCanceledException">The run was cancelled.</exception>
    /// <exception cref="XenstoreException">The daemon refused a request (EACCES on a node the backend must read).</exception>
    /// <exception cref="IOException">The xenstore connection broke.</exception>
    public async Task RunAsync(IXenbusBackendHandler handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_run is { IsCompleted: false }) throw new InvalidOperationException("the device is already running");
            _run = done.Task;
        }

        try
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lifetime.Token);
            try
            {
                await WalkAsync(handler, linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (linked.IsCancellationRequested)
            {
                await CloseQuietlyAsync(handler).ConfigureAwait(false);
                cancellationToken.ThrowIfCancellationRequested();
                throw new ObjectDisposedException(nameof(XenbusBackendDevice));
            }
        }
        finally
        {
            done.TrySetResult();
        }
    }

    private async Task CloseQuietlyAsync(IXenbusBackendHandler handler)
    {
        try
        {
            await SwitchAsync(handler, XenbusState.Closed, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is XenstoreException or IOException or ObjectDisposedException)
        {
            // Best effort: a broken or disposed connection has nobody left to tell.
        }
    }

    private async Task<bool> SwitchAsync(IXenbusBackendHandler handler, XenbusState state, CancellationToken cancellationToken)
    {
        if (!await SwitchStateAsync(state, cancellationToken).ConfigureAwait(false)) return false;
        handler.OnStateSwitched(this, state);
        return true;
    }

    private async Task WalkAsync(IXenbusBackendHandler handler, CancellationToken ct)
    {
        await using var watches = new XenbusWatchSet(Client);
        watches.Add(BackendPath, XenbusWatchSet.Changed, required: true);            // XB03: online, removal
        watches.Add(FrontendPath + "/" + XenbusNodes.StateNode, XenbusWatchSet.Changed, required: true);
        watches.Add("@releaseDomain", XenbusWatchSet.Released, required: false);

        bool started = false, resetting = false, askedToClose = false, frontendDead = false;
        int fired = XenbusWatchSet.Released;   // the first evaluation asks whether the frontend lives
        try
        {
            while (true)
            {
                if ((fired & XenbusWatchSet.Released) != 0) frontendDead = !await IsFrontendIntroducedAsync(ct).ConfigureAwait(false);
                string? own = await Client.TryReadStringAsync(BackendPath + "/" + XenbusNodes.StateNode, ct).ConfigureAwait(false);
                bool online = IsOnline(await Client.TryReadStringAsync(BackendPath + "/online", ct).ConfigureAwait(false));
                XenbusState? frontend = await XenbusNodes.TryReadStateAsync(Client, FrontendPath, ct).ConfigureAwait(false);
                bool frontendLive = !frontendDead && frontend is { } f && Array.IndexOf(LiveFrontendStates, f) >= 0;
                // Only Initialised or Connected starts a connection; the reconfiguration states merely keep one.
                bool frontendReady = frontendLive && (frontend is XenbusState.Initialised or XenbusState.Connected);

                if (own is null)
                {
                    // The toolstack removed the device: nothing may be written any more.
                    if (IsConnected) await DisconnectAsync(handler, XenbusDisconnectReason.DeviceRemoved).ConfigureAwait(false);
                    return;
                }

                if (IsConnected)
                {
                    XenbusDisconnectReason? lost =
                        frontendDead ? XenbusDisconnectReason.PeerDomainDied
                        : frontend is null ? XenbusDisconnectReason.PeerVanished
                        : !frontendLive ? XenbusDisconnectReason.PeerClosed
                        : null;
                    if (lost is { } reason)
                    {
                        await DisconnectAsync(handler, reason).ConfigureAwait(false);
                        askedToClose = false;
                        if (!online)
                        {
                            await SwitchAsync(handler, XenbusState.Closed, ct).ConfigureAwait(false);
                            return;
                        }
                        await SwitchAsync(handler, XenbusState.InitWait, ct).ConfigureAwait(false);
                        fired = 0;
                        continue;   // re-read: the frontend may already be back
                    }
                    if (!online && !askedToClose)
                    {
                        // The toolstack wants the device gone: ask the frontend to close first.
                        askedToClose = true;
                        await SwitchAsync(handler, XenbusState.Closing, ct).ConfigureAwait(false);
                    }
                }
                else if (!online)
                {
                    await SwitchAsync(handler, XenbusState.Closed, ct).ConfigureAwait(false);
                    return;
                }
                else if (!started)
                {
                    started = true;
                    await SwitchAsync(handler, XenbusState.Initialising, ct).ConfigureAwait(false);
                    await handler.PublishAsync(this, ct).ConfigureAwait(false);
                    await SwitchAsync(handler, XenbusState.InitWait, ct).ConfigureAwait(false);
                    fired = 0;
                    continue;
                }
                else if (resetting)
                {
                    // After a failed connect: wait until the frontend has let go of what it published.
                    if (!frontendLive)
                    {
                        resetting = false;
                        await SwitchAsync(handler, XenbusState.InitWait, ct).ConfigureAwait(false);
                        fired = 0;
                        continue;
                    }
                }
                else if (frontendReady)
                {
                    Volatile.Write(ref _connected, 1);
                    try
                    {
                        await handler.ConnectAsync(this, ct).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (ct.IsCancellationRequested)
                    {
                        throw;   // the finally below disconnects
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        LastConnectFailure = e;
                        await DisconnectAsync(handler, XenbusDisconnectReason.ConnectFailed).ConfigureAwait(false);
                        resetting = true;
                        await SwitchAsync(handler, XenbusState.Closing, ct).ConfigureAwait(false);
                        fired = 0;
                        continue;
                    }
                    await SwitchAsync(handler, XenbusState.Connected, ct).ConfigureAwait(false);
                    fired = 0;
                    continue;   // the frontend may have gone while the handler connected
                }

                fired = await watches.WaitAsync(ct).ConfigureAwait(false);
            }
        }
        finally
        {
            // Cancellation, disposal or a failing xenstore connection while connected.
            if (IsConnected) await DisconnectAsync(handler, XenbusDisconnectReason.Stopped).ConfigureAwait(false);
        }
    }

    private async Task DisconnectAsync(IXenbusBackendHandler handler, XenbusDisconnectReason reason)
    {
        // Exactly once per connect: the flag goes down before the handler runs, so no path can call it twice.
        if (Interlocked.Exchange(ref _connected, 0) == 0) return;
        await handler.DisconnectAsync(this, reason).ConfigureAwait(false);
    }

    private async Task<bool> IsFrontendIntroducedAsync(CancellationToken ct)
    {
        try
        {
            return await Client.IsDomainIntroducedAsync(FrontendId, ct).ConfigureAwait(false);
        }
        catch (XenstoreException)
        {
            // XS_IS_DOMAIN_INTRODUCED is dom0's: a backend in another domain relies on the frontend's
            // directory vanishing (the toolstack removes it when the domain dies).
            return true;
        }
    }

    /// <summary>Stops a run in progress (as cancellation does: a connected handler is disconnected, Closed
    /// written) and waits for it to end. Does not dispose the client.</summary>
    public async ValueTask DisposeAsync()
    {
        Task? run;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            run = _run;
        }
        await _lifetime.CancelAsync().ConfigureAwait(false);
        if (run is not null) await run.ConfigureAwait(false);
        _lifetime.Dispose();
    }
}
