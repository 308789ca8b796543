using DisplifAbi = XenShare.Abi.Displif;
using System.Globalization;
using XenShare.Abi;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Displif;

/// <summary>
/// The backend of one PV display device <c>vdispl/&lt;id&gt;</c> of a frontend domain (<c>xen/io/displif.h</c>,
/// protocol version 2; spec DP01-DP06), over a <see cref="XenstoreClient"/> and an
/// <see cref="IGuestProcess"/>, so it runs on the emulator and on real Xen. Buffers go to an
/// <see cref="IDisplaySink"/>.
/// </summary>
/// <remarks>
/// <para>The xenbus walk is <see cref="XenbusBackendDevice"/>'s (XB02, XB03): the backend publishes
/// <c>versions</c> = "2" before InitWait; when the frontend is Initialised it reads <c>be-alloc</c> and the
/// connectors (<c>&lt;n&gt;/resolution</c>, <c>&lt;n&gt;/unique-id</c> for n = 0, 1, ... until one is missing)
/// from the frontend directory, where <c>xl</c> writes them, then per connector <c>req-ring-ref</c>,
/// <c>req-event-channel</c>, <c>evt-ring-ref</c>, <c>evt-event-channel</c>; it maps both pages, binds both
/// ports, and once Connected serves each connector's ring on a thread of its own. It never reads the
/// frontend's <c>version</c> (Linux 6.1 writes none: displif note 9, docs/design.md).</para>
/// <para>Requests (DP03-DP05): DBUF_CREATE (frontend-allocated: the page directory chain is walked and
/// the refs exported as a dma-buf with EXP_FROM_REFS; be-alloc with XENDISPL_DBUF_FLG_REQ_ALLOC: a local
/// buffer from the <see cref="IDisplifBufferAllocator"/> granted with IMP_TO_REFS, its refs written into
/// the frontend's directory), DBUF_DESTROY (answered after the release, within
/// <see cref="DisplifBackendOptions.DestroyAnswerBudget"/>, else -EBUSY), FB_ATTACH / FB_DETACH,
/// SET_CONFIG (a framebuffer is presented; cookie 0 turns the connector off), PG_FLIP (presented, then
/// XENDISPL_EVT_PG_FLIP with ids 0, 1, 2, ... per connector, paced by
/// <see cref="DisplifBackendOptions.FrameInterval"/>) and GET_EDID (an EDID block for the connector's
/// resolution). Statuses: -EINVAL malformed (sizes, dimensions, formats, a directory that ends early),
/// -E2BIG more pages than <see cref="DisplifBackendOptions.MaxBufferPages"/>, -ENOENT unknown cookie,
/// -EEXIST reused cookie, -ENOMEM too many buffers or framebuffers, -EOPNOTSUPP unknown operation, the
/// kernel's errno when a map or export of the frontend's refs fails. A refused request changes nothing
/// (DP06).</para>
/// <para>Disconnect (frontend Closing/Closed or restarting, its directory or domain gone, the device
/// removed, the run stopped): the ring threads stop, every framebuffer leaves the sink, every buffer is
/// released (exports closed, imports ended, waits for the releases), the ports are unbound and the
/// pages unmapped; the walk then offers InitWait again (displif notes 6 and 7, docs/design.md). A protocol error on a ring (RG04)
/// does the same at once and switches the device to Closing.</para>
/// <para>Lock: <c>_gate</c> guards <c>_connection</c>; a leaf, never held across an await or a call
/// out. The connection's request lock is documented on the connection (docs/design.md, lock order).</para>
/// </remarks>
public sealed class DisplifBackend : IXenbusBackendHandler, IAsyncDisposable
{
    private readonly Lock _gate = new();
    private readonly IDisplifBufferAllocator? _ownedAllocator;
    private DisplifBackendConnection? _connection;
    private IReadOnlyList<DisplifConnector> _connectors = [];
    private bool _backendAllocates;
    private int _disposed;

    private DisplifBackend(XenbusBackendDevice device, IGuestProcess process, IDisplaySink sink, DisplifBackendOptions options)
    {
        Device = device;
        Process = process;
        Sink = sink;
        Options = options;
        if (options.Allocator is { } allocator) Allocator = allocator;
        else Allocator = _ownedAllocator = new GntAllocBufferAllocator(process, device.BackendId);
    }

    /// <summary>Opens the backend end of the device <c>vdispl/&lt;deviceId&gt;</c> of
    /// <paramref name="frontend"/>, whose XB01 directories the toolstack wrote.</summary>
    /// <param name="client">The backend domain's xenstore connection (not owned).</param>
    /// <param name="process">The backend's process: maps, exports and event channels are made in it.</param>
    /// <param name="backend">This (the backend's) domain.</param>
    /// <param name="frontend">The frontend's domain.</param>
    /// <param name="deviceId">The device id.</param>
    /// <param name="sink">Where framebuffers go (not owned).</param>
    /// <param name="options">Settings; null for the defaults.</param>
    /// <param name="cancellationToken">Cancels the reads.</param>
    /// <exception cref="XenstoreException">A node of the backend directory is missing or unreadable.</exception>
    /// <exception cref="InvalidDataException">The backend directory names another frontend.</exception>
    public static async Task<DisplifBackend> OpenAsync(XenstoreClient client, IGuestProcess process, DomainId backend, DomainId frontend,
        int deviceId, IDisplaySink sink, DisplifBackendOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(process);
        ArgumentNullException.ThrowIfNull(sink);
        var device = await XenbusBackendDevice.OpenAsync(client, backend, frontend, DisplifAbi.XENDISPL_DRIVER_NAME, deviceId, cancellationToken)
            .ConfigureAwait(false);
        try
        {
            return new DisplifBackend(device, process, sink, options ?? new DisplifBackendOptions());
        }
        catch
        {
            await device.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The xenbus device (paths, states).</summary>
    public XenbusBackendDevice Device { get; }

    /// <summary>The backend's process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The sink.</summary>
    public IDisplaySink Sink { get; }

    /// <summary>The settings.</summary>
    public DisplifBackendOptions Options { get; }

    /// <summary>The allocator of be-alloc buffers.</summary>
    public IDisplifBufferAllocator Allocator { get; }

    /// <summary>The connectors read at the last connect (empty before).</summary>
    public IReadOnlyList<DisplifConnector> Connectors => Volatile.Read(ref _connectors);

    /// <summary>Whether the toolstack set <c>be-alloc</c> to 1 (read at the last connect).</summary>
    public bool BackendAllocates => Volatile.Read(ref _backendAllocates);

    /// <summary>Whether a frontend is connected and its rings are served.</summary>
    public bool IsConnected
    {
        get { lock (_gate) return _connection is not null; }
    }

    /// <summary>The buffers held for the connected frontend.</summary>
    public int BufferCount
    {
        get { lock (_gate) return _connection?.BufferCount ?? 0; }
    }

    /// <summary>The framebuffers attached for the connected frontend.</summary>
    public int FramebufferCount
    {
        get { lock (_gate) return _connection?.FramebufferCount ?? 0; }
    }

    /// <summary>Releases that outlived DBUF_DESTROY's answer and are still waited for.</summary>
    public int PendingReleaseCount
    {
        get { lock (_gate) return _connection?.PendingReleaseCount ?? 0; }
    }

    /// <summary>The last protocol error that closed a connection, or null.</summary>
    public Exception? LastFault { get; private set; }

    /// <summary>Raised on a ring thread after each answered request (for logs and tests; must not block).</summary>
    public event EventHandler<DisplifRequestEventArgs>? RequestServed;

    /// <summary>Raised on state switches, connects, disconnects, faults and sink failures (must not block).</summary>
    public event EventHandler<DisplifConnectionEventArgs>? ConnectionChanged;

    /// <summary>Runs the device (see <see cref="XenbusBackendDevice.RunAsync"/>) until it is closed for
    /// good, cancelled or disposed; frontends that close, restart or die only end a connection.</summary>
    /// <param name="cancellationToken">Stops the run (a connected frontend is torn down, Closed written).</param>
    /// <exception cref="OperationCanceledException">The run was cancelled.</exception>
    public Task RunAsync(CancellationToken cancellationToken = default) => Device.RunAsync(this, cancellationToken);

    async Task IXenbusBackendHandler.PublishAsync(XenbusBackendDevice device, CancellationToken cancellationToken)
    {
        // DP01: the versions this backend speaks. Linux 6.1 never reads it (displif note 9, docs/design.md); others may.
        await device.Client.WriteAsync(device.BackendPath + "/" + DisplifAbi.XENDISPL_FIELD_BE_VERSIONS, DisplifAbi.XENDISPL_PROTOCOL_VERSION, cancellationToken)
            .ConfigureAwait(false);
    }

    async Task IXenbusBackendHandler.ConnectAsync(XenbusBackendDevice device, CancellationToken cancellationToken)
    {
        var (connectors, beAlloc) = await ReadConfigurationAsync(device, cancellationToken).ConfigureAwait(false);
        Volatile.Write(ref _connectors, connectors);
        Volatile.Write(ref _backendAllocates, beAlloc);
        var connection = new DisplifBackendConnection(this, device, Process, connectors, beAlloc);
        lock (_gate) _connection = connection;
        await connection.ConnectAsync(cancellationToken).ConfigureAwait(false);
    }

    private static Task<(IReadOnlyList<DisplifConnector> Connectors, bool BackendAllocates)> ReadConfigurationAsync(XenbusBackendDevice device, CancellationToken ct) =>
        DisplifConfiguration.ReadAsync(device.Client, device.FrontendPath, ct);

    async Task IXenbusBackendHandler.DisconnectAsync(XenbusBackendDevice device, XenbusDisconnectReason reason)
    {
        DisplifBackendConnection? connection;
        lock (_gate)
        {
            connection = _connection;
            _connection = null;
        }
        if (connection is not null) await connection.TeardownAsync(closeDevice: false).ConfigureAwait(false);
        Raise(new DisplifConnectionEventArgs(DisplifConnectionChange.Disconnected, reason: reason));
    }

    void IXenbusBackendHandler.OnStateSwitched(XenbusBackendDevice device, XenbusState state)
    {
        if (state == XenbusState.Connected)
        {
            DisplifBackendConnection? connection;
            lock (_gate) connection = _connection;
            // The rings are served from Connected on: the frontend sends nothing before it sees it.
            connection?.Start();
            Raise(new DisplifConnectionEventArgs(DisplifConnectionChange.StateSwitched, state));
            Raise(new DisplifConnectionEventArgs(DisplifConnectionChange.Connected));
            return;
        }
        Raise(new DisplifConnectionEventArgs(DisplifConnectionChange.StateSwitched, state));
    }

    internal void OnStateSwitched(XenbusState state) => Raise(new DisplifConnectionEventArgs(DisplifConnectionChange.StateSwitched, state));

    internal void OnFault(int connector, Exception error)
    {
        LastFault = error;
        Raise(new DisplifConnectionEventArgs(DisplifConnectionChange.Faulted, error: error, connector: connector));
    }

    internal void OnSinkError(Exception error) => Raise(new DisplifConnectionEventArgs(DisplifConnectionChange.SinkFailed, error: error));

    internal void OnRequestServed(int connector, in xendispl_req request, int status)
    {
        var handler = RequestServed;
        if (handler is null) return;
        ulong cookie = request.operation switch
        {
            DisplifAbi.XENDISPL_OP_DBUF_CREATE => request.op.dbuf_create.dbuf_cookie,
            DisplifAbi.XENDISPL_OP_DBUF_DESTROY => request.op.dbuf_destroy.dbuf_cookie,
            DisplifAbi.XENDISPL_OP_FB_ATTACH => request.op.fb_attach.dbuf_cookie,
            DisplifAbi.XENDISPL_OP_FB_DETACH => request.op.fb_detach.fb_cookie,
            DisplifAbi.XENDISPL_OP_SET_CONFIG => request.op.set_config.fb_cookie,
            DisplifAbi.XENDISPL_OP_PG_FLIP => request.op.pg_flip.fb_cookie,
            _ => 0,
        };
        handler(this, new DisplifRequestEventArgs(connector, request.id, request.operation, status, cookie));
    }

    private void Raise(DisplifConnectionEventArgs e) => ConnectionChanged?.Invoke(this, e);

    /// <summary>Stops a run in progress (a connected frontend is torn down, Closed written), disposes the
    /// xenbus device and an allocator the backend made. Does not dispose the client or the sink.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        await Device.DisposeAsync().ConfigureAwait(false);
        (_ownedAllocator as IDisposable)?.Dispose();
    }
}
