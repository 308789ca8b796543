using System.Globalization;
using XenShare.Xenstore;

namespace XenShare.Xenbus;

/// <summary>
/// The frontend end of one PV device <c>&lt;type&gt;/&lt;id&gt;</c> (spec XB01, XB02), over a
/// <see cref="XenstoreClient"/>: the paths the toolstack wrote, the <c>state</c> nodes of both ends, and the
/// frontend's walk of the handshake - <see cref="ConnectAsync"/> (Initialising, wait for the backend's
/// InitWait, publish rings and event channels, Initialised, wait for the backend's Connected, Connected) and
/// <see cref="CloseAsync"/> (Closing, wait until the backend let go, Closed).
/// </summary>
/// <remarks>
/// <para>One instance is one run of a frontend driver: after <see cref="CloseAsync"/> a new instance (a
/// reloaded driver) may connect again. Disposing an instance that is not closed closes it, waiting at most
/// <see cref="CloseTimeout"/> for the backend. The device does not own the client.</para>
/// <para>A backend that never moves never blocks the device for good: every wait ends with its
/// cancellation token (and <see cref="DisposeAsync"/> cancels a connect in progress).</para>
/// <para>Lock: <c>_gate</c> guards <c>_operation</c> and <c>_disposed</c> only; it is a leaf, never held
/// across an await, a xenstore request or a callback (docs/design.md, lock order).</para>
/// </remarks>
public sealed class XenbusFrontendDevice : IAsyncDisposable
{
    /// <summary>The default of <see cref="CloseTimeout"/>.</summary>
    public static readonly TimeSpan DefaultCloseTimeout = TimeSpan.FromSeconds(10);

    private readonly Lock _gate = new();
    private readonly CancellationTokenSource _lifetime = new();
    private Task? _operation;
    private bool _disposed;
    private int _state;
    private TimeSpan _closeTimeout = DefaultCloseTimeout;

    private XenbusFrontendDevice(XenstoreClient client, DomainId frontend, DomainId backend, string type, int id, string backendPath)
    {
        Client = client;
        FrontendId = frontend;
        BackendId = backend;
        DeviceType = type;
        DeviceId = id;
        FrontendPath = XenbusNodes.FrontendPath(frontend, type, id);
        BackendPath = backendPath;
    }

    /// <summary>The XB01 frontend directory of a device: <c>/local/domain/&lt;frontend&gt;/device/&lt;type&gt;/&lt;id&gt;</c>.</summary>
    /// <param name="frontend">The frontend's domain.</param>
    /// <param name="type">The device type ("vdispl").</param>
    /// <param name="id">The device id.</param>
    /// <exception cref="ArgumentException">The type is empty or not one path element, or the id is negative.</exception>
    public static string PathOf(DomainId frontend, string type, int id)
    {
        XenbusNodes.ValidateDevice(type, id);
        return XenbusNodes.FrontendPath(frontend, type, id);
    }

    /// <summary>Opens the frontend end of a device whose directories the toolstack wrote (XB01): reads the
    /// frontend directory's <c>backend</c> and <c>backend-id</c> nodes.</summary>
    /// <param name="client">The frontend domain's xenstore connection (not owned).</param>
    /// <param name="frontend">This (the frontend's) domain.</param>
    /// <param name="type">The device type.</param>
    /// <param name="id">The device id.</param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <exception cref="XenstoreException">A node is missing (ENOENT) or unreadable (EACCES).</exception>
    /// <exception cref="InvalidDataException"><c>backend-id</c> is not a domain id or <c>backend</c> is not a
    /// path in that domain's home.</exception>
    public static async Task<XenbusFrontendDevice> OpenAsync(
        XenstoreClient client, DomainId frontend, string type, int id, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        string path = PathOf(frontend, type, id);
        string backendPath = await client.ReadStringAsync(path + "/backend", cancellationToken).ConfigureAwait(false);
        string backendId = await client.ReadStringAsync(path + "/backend-id", cancellationToken).ConfigureAwait(false);
        if (!ushort.TryParse(backendId, NumberStyles.None, CultureInfo.InvariantCulture, out ushort be))
            throw new InvalidDataException($"{path}/backend-id is '{backendId}', not a domain id");
        var backend = new DomainId(be);
        if (!XenbusBackendDevice.IsPathIn(backendPath, backend))
            throw new InvalidDataException($"{path}/backend is '{backendPath}', not a path in domain {be}'s home");
        return new XenbusFrontendDevice(client, frontend, backend, type, id, backendPath);
    }

    /// <summary>The xenstore connection the device uses (the publish callback writes with it).</summary>
    public XenstoreClient Client { get; }

    /// <summary>The frontend's (this) domain.</summary>
    public DomainId FrontendId { get; }

    /// <summary>The backend's domain, from the <c>backend-id</c> node.</summary>
    public DomainId BackendId { get; }

    /// <summary>The device type.</summary>
    public string DeviceType { get; }

    /// <summary>The device id.</summary>
    public int DeviceId { get; }

    /// <summary>The frontend directory (XB01), no trailing slash.</summary>
    public string FrontendPath { get; }

    /// <summary>The backend directory, as the toolstack wrote it in the frontend's <c>backend</c> node.</summary>
    public string BackendPath { get; }

    /// <summary>The state this device last wrote (<see cref="XenbusState.Unknown"/> before the first write).</summary>
    public XenbusState State => (XenbusState)Volatile.Read(ref _state);

    /// <summary>How long <see cref="DisposeAsync"/> waits for the backend to let go before it writes Closed
    /// anyway. Default <see cref="DefaultCloseTimeout"/>.</summary>
    public TimeSpan CloseTimeout
    {
        get => _closeTimeout;
        set
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(value, TimeSpan.Zero);
            _closeTimeout = value;
        }
    }

    /// <summary>Reads the frontend's <c>state</c> node (Unknown when missing or unparsable).</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<XenbusState> ReadStateAsync(CancellationToken cancellationToken = default) =>
        await XenbusNodes.TryReadStateAsync(Client, FrontendPath, cancellationToken).ConfigureAwait(false) ?? XenbusState.Unknown;

    /// <summary>Reads the backend's <c>state</c> node (Unknown when missing or unparsable).</summary>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<XenbusState> ReadBackendStateAsync(CancellationToken cancellationToken = default) =>
        await XenbusNodes.TryReadStateAsync(Client, BackendPath, cancellationToken).ConfigureAwait(false) ?? XenbusState.Unknown;

    /// <summary>Writes <paramref name="state"/> into the frontend's <c>state</c> node, in a transaction that checks
    /// the node still exists. <see cref="ConnectAsync"/> and <see cref="CloseAsync"/> drive the state
    /// themselves; call this only for a walk of your own.</summary>
    /// <returns>False when the node was gone (nothing written).</returns>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public async Task<bool> SwitchStateAsync(XenbusState state, CancellationToken cancellationToken = default)
    {
        bool written = await XenbusNodes.SwitchAsync(Client, FrontendPath, state, cancellationToken).ConfigureAwait(false);
        if (written) Volatile.Write(ref _state, (int)state);
        return written;
    }

    /// <summary>The backend's state as a stream (a watch on its <c>state</c> node): the current value once the
    /// watch is registered, then each change to a different value (a vanished node is Unknown).</summary>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    public IAsyncEnumerable<XenbusState> WatchBackendStateAsync(CancellationToken cancellationToken = default) =>
        XenbusNodes.WatchStateAsync(Client, BackendPath, cancellationToken);

    /// <summary>Waits until the backend's state satisfies <paramref name="predicate"/> (checked on the current
    /// value first) and returns it.</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    public Task<XenbusState> WaitForBackendStateAsync(Func<XenbusState, bool> predicate, CancellationToken cancellationToken = default) =>
        XenbusNodes.WaitForStateAsync(Client, BackendPath, predicate, cancellationToken);

    /// <summary>
    /// The frontend's walk to Connected (XB02): switches to Initialising, waits for the backend's InitWait,
    /// runs <paramref name="publish"/> (grant the rings, allocate the event channels, write their refs and
    /// ports into <see cref="FrontendPath"/>), switches to Initialised, waits for the backend's Connected and
    /// switches to Connected.
    /// </summary>
    /// <remarks>A backend still Connected to an earlier frontend instance is waited out: only its InitWait
    /// lets this instance publish. When the walk fails the device stays in the state it reached; call
    /// <see cref="CloseAsync"/> (or dispose) and release what <paramref name="publish"/> set up after that.</remarks>
    /// <param name="publish">Publishes the frontend's rings and event channels.</param>
    /// <param name="cancellationToken">Cancels the walk (the waits and the callback).</param>
    /// <exception cref="XenbusPeerClosedException">The backend went to Closing, Closed or Unknown, or its
    /// directory vanished, while the device waited for it.</exception>
    /// <exception cref="XenstoreException">The daemon refused (ENOENT when the frontend directory is gone).</exception>
    /// <exception cref="InvalidOperationException">Another walk of this device is in progress, or it is not
    /// in its initial state.</exception>
    /// <exception cref="ObjectDisposedException">The device was disposed.</exception>
    public Task ConnectAsync(Func<XenbusFrontendDevice, CancellationToken, Task> publish, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(publish);
        if (State != XenbusState.Unknown) throw new InvalidOperationException($"the device is {State}; a frontend instance connects once");
        return Exclusive(ct => ConnectCoreAsync(publish, ct), cancellationToken);
    }

    /// <summary>
    /// The frontend's walk to Closed: switches to Closing, waits until the backend let go (its state is no
    /// longer Initialised, Connected, Closing or a reconfiguration state, or its node is gone), then switches
    /// to Closed. After it returns the backend maps nothing of this frontend any more (when it follows XB02),
    /// so the caller may release its rings. Nothing is written when the frontend directory is gone.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait (the device stays Closing).</param>
    /// <exception cref="XenstoreException">The daemon refused.</exception>
    /// <exception cref="InvalidOperationException">Another walk of this device is in progress.</exception>
    /// <exception cref="ObjectDisposedException">The device was disposed.</exception>
    public Task CloseAsync(CancellationToken cancellationToken = default) =>
        Exclusive(CloseCoreAsync, cancellationToken);

    private async Task Exclusive(Func<CancellationToken, Task> walk, CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_operation is { IsCompleted: false }) throw new InvalidOperationException("another walk of the device is in progress");
            _operation = done.Task;
        }
        try
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _lifetime.Token);
            try
            {
                await walk(linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (linked.IsCancellationRequested)
            {
                // Report the caller's token (not the linked one), or the disposal that cancelled the walk.
                cancellationToken.ThrowIfCancellationRequested();
                throw new ObjectDisposedException(nameof(XenbusFrontendDevice));
            }
        }
        finally
        {
            done.TrySetResult();
        }
    }

    private async Task ConnectCoreAsync(Func<XenbusFrontendDevice, CancellationToken, Task> publish, CancellationToken ct)
    {
        await SwitchOrThrowAsync(XenbusState.Initialising, ct).ConfigureAwait(false);
        await using (var watches = new XenbusWatchSet(Client))
        {
            watches.Add(BackendPath + "/" + XenbusNodes.StateNode, XenbusWatchSet.Changed, required: true);

            // The backend's InitWait; anything else is waited out (a backend resetting after a failed
            // connect passes through Closing), except a backend that is gone.
            while (true)
            {
                XenbusState? backend = await XenbusNodes.TryReadStateAsync(Client, BackendPath, ct).ConfigureAwait(false);
                if (backend is null) throw new XenbusPeerClosedException(BackendPath, XenbusState.Unknown, vanished: true);
                if (backend == XenbusState.InitWait) break;
                await watches.WaitAsync(ct).ConfigureAwait(false);
            }

            await publish(this, ct).ConfigureAwait(false);
            await SwitchOrThrowAsync(XenbusState.Initialised, ct).ConfigureAwait(false);

            while (true)
            {
                XenbusState? backend = await XenbusNodes.TryReadStateAsync(Client, BackendPath, ct).ConfigureAwait(false);
                if (backend is null) throw new XenbusPeerClosedException(BackendPath, XenbusState.Unknown, vanished: true);
                if (backend == XenbusState.Connected) break;
                if (backend is XenbusState.Closing or XenbusState.Closed or XenbusState.Unknown)
                    throw new XenbusPeerClosedException(BackendPath, backend.Value, vanished: false);
                await watches.WaitAsync(ct).ConfigureAwait(false);
            }
        }
        await SwitchOrThrowAsync(XenbusState.Connected, ct).ConfigureAwait(false);
    }

    private async Task SwitchOrThrowAsync(XenbusState state, CancellationToken ct)
    {
        if (!await SwitchStateAsync(state, ct).ConfigureAwait(false))
            throw new XenstoreException(Abi.Errno.ENOENT, "XS_WRITE", FrontendPath + "/" + XenbusNodes.StateNode);
    }

    private async Task CloseCoreAsync(CancellationToken ct)
    {
        if (!await SwitchStateAsync(XenbusState.Closing, ct).ConfigureAwait(false))
        {
            Volatile.Write(ref _state, (int)XenbusState.Closed);   // the directory is gone: nothing to tell
            return;
        }
        await using (var watches = new XenbusWatchSet(Client))
        {
            watches.Add(BackendPath + "/" + XenbusNodes.StateNode, XenbusWatchSet.Changed, required: true);
            while (true)
            {
                XenbusState? backend = await XenbusNodes.TryReadStateAsync(Client, BackendPath, ct).ConfigureAwait(false);
                if (backend is null or not (XenbusState.Initialised or XenbusState.Connected or XenbusState.Closing
                    or XenbusState.Reconfiguring or XenbusState.Reconfigured)) break;
                await watches.WaitAsync(ct).ConfigureAwait(false);
            }
        }
        if (!await SwitchStateAsync(XenbusState.Closed, ct).ConfigureAwait(false))
            Volatile.Write(ref _state, (int)XenbusState.Closed);
    }

    /// <summary>Cancels a walk in progress and, unless the device is Closed (or never wrote a state), closes
    /// it: Closing, a wait of at most <see cref="CloseTimeout"/> for the backend, Closed. Xenstore failures
    /// are swallowed (a broken connection has nobody left to tell). Does not dispose the client.</summary>
    public async ValueTask DisposeAsync()
    {
        Task? operation;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            operation = _operation;
        }
        await _lifetime.CancelAsync().ConfigureAwait(false);
        if (operation is not null) await operation.ConfigureAwait(false);
        if (State is not (XenbusState.Unknown or XenbusState.Closed))
        {
            using var timeout = new CancellationTokenSource(CloseTimeout);
            try
            {
                await CloseCoreAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (timeout.IsCancellationRequested)
            {
                await CloseAnywayAsync().ConfigureAwait(false);
            }
            catch (Exception e) when (e is XenstoreException or IOException or ObjectDisposedException)
            {
                // Broken or disposed connection.
            }
        }
        _lifetime.Dispose();
    }

    private async Task CloseAnywayAsync()
    {
        try
        {
            await SwitchStateAsync(XenbusState.Closed, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is XenstoreException or IOException or ObjectDisposedException)
        {
            // Best effort.
        }
    }
}
