using System.Globalization;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Xenbus;
using XenShare.Xenstore;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Displif;

/// <summary>
/// The guest's side of a PV display device <c>vdispl/&lt;id&gt;</c> (spec DP01-DP05), for the emulator's
/// demo, the tests and any .NET frontend, over <see cref="XenbusFrontendDevice"/>: per connector it grants a
/// request-ring page and an event page to the backend, allocates two event channels, publishes the four
/// keys (and <c>version</c>) in one transaction and goes Initialised; once Connected it sends requests
/// with the order and shape Linux's xen-drm-front uses.
/// </summary>
/// <remarks>
/// <para>One request is in flight per connector (as Linux); each waits at most
/// <see cref="RequestTimeout"/> for its response. Buffer requests (DBUF_CREATE, DBUF_DESTROY, FB_ATTACH,
/// FB_DETACH) go on connector 0's ring, as Linux sends them; SET_CONFIG, PG_FLIP and GET_EDID on the
/// connector's own. A thread per connector receives responses and events.</para>
/// <para>One instance is one run of a frontend driver: after <see cref="CloseAsync"/> (or disposal) a new
/// instance may connect again (a reconnect).</para>
/// <para>Lock: <c>_gate</c> guards <c>_buffers</c>; a leaf, never held across an await or an ioctl. The
/// channels' locks are documented on them.</para>
/// </remarks>
public sealed class DisplifFrontend : IAsyncDisposable
{
    private static readonly int RefsPerDirectoryPage = (XenPage.Size - 4) / 4;

    private readonly Lock _gate = new();
    private readonly List<DisplifBuffer> _buffers = [];
    private readonly DisplifFrontendChannel[] _channels;
    private readonly GrantSharer _sharer;
    private readonly GrantDevice _gntdev;
    private long _nextCookie = 0x1000;
    private int _closed;

    private DisplifFrontend(XenbusFrontendDevice device, IGuestProcess process, IReadOnlyList<DisplifConnector> connectors, bool beAlloc)
    {
        Device = device;
        Process = process;
        Connectors = connectors;
        BackendAllocates = beAlloc;
        _channels = [.. connectors.Select(c => new DisplifFrontendChannel(c.Index, TimeSpan.FromMilliseconds(100)))];
        _sharer = GrantSharer.Open(process);
        _gntdev = GrantDevice.Open(process);
    }

    /// <summary>The default of <see cref="RequestTimeout"/>: 3 s, Linux's XEN_DRM_FRONT_WAIT_BACK_MS.</summary>
    public static readonly TimeSpan DefaultRequestTimeout = TimeSpan.FromSeconds(3);

    /// <summary>Opens the device, reads its configuration (<c>be-alloc</c>, the connectors) and walks the
    /// handshake to Connected (XB02).</summary>
    /// <param name="client">The frontend domain's xenstore connection (not owned).</param>
    /// <param name="process">The frontend's process (grants, event channels).</param>
    /// <param name="self">This (the frontend's) domain.</param>
    /// <param name="deviceId">The device id.</param>
    /// <param name="writeVersion">Write <c>version</c> = "2" with the ring keys (spec DP01); Linux 6.1
    /// writes none (displif note 9, docs/design.md).</param>
    /// <param name="cancellationToken">Cancels the walk (everything set up is released).</param>
    /// <exception cref="XenbusPeerClosedException">The backend closed or vanished during the walk.</exception>
    /// <exception cref="InvalidDataException">The device has no connector or a malformed resolution.</exception>
    public static async Task<DisplifFrontend> ConnectAsync(XenstoreClient client, IGuestProcess process, DomainId self, int deviceId,
        bool writeVersion = true, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(process);
        var device = await XenbusFrontendDevice.OpenAsync(client, self, DisplifAbi.XENDISPL_DRIVER_NAME, deviceId, cancellationToken).ConfigureAwait(false);
        DisplifFrontend? frontend = null;
        try
        {
            var (connectors, beAlloc) = await ReadConfigurationAsync(device, cancellationToken).ConfigureAwait(false);
            frontend = new DisplifFrontend(device, process, connectors, beAlloc);
            await device.ConnectAsync((d, ct) => frontend.PublishAsync(d, writeVersion, ct), cancellationToken).ConfigureAwait(false);
            frontend.Start();
            return frontend;
        }
        catch
        {
            if (frontend is not null) await frontend.DisposeAsync().ConfigureAwait(false);
            else await device.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private static Task<(IReadOnlyList<DisplifConnector> Connectors, bool BackendAllocates)> ReadConfigurationAsync(XenbusFrontendDevice device, CancellationToken ct) =>
        DisplifConfiguration.ReadAsync(device.Client, device.FrontendPath, ct);

    private async Task PublishAsync(XenbusFrontendDevice device, bool writeVersion, CancellationToken ct)
    {
        foreach (var channel in _channels) channel.Create(_sharer, Process, device.BackendId);
        // DP01: the four keys of every connector in one transaction.
        await device.Client.TransactionAsync(async (t, c) =>
        {
            if (writeVersion)
                await t.WriteAsync(device.FrontendPath + "/" + DisplifAbi.XENDISPL_FIELD_FE_VERSION, DisplifAbi.XENDISPL_PROTOCOL_VERSION, c).ConfigureAwait(false);
            foreach (var channel in _channels)
            {
                string dir = device.FrontendPath + "/" + channel.Index.ToString(CultureInfo.InvariantCulture) + "/";
                await t.WriteAsync(dir + DisplifAbi.XENDISPL_FIELD_REQ_RING_REF, Text(channel.Pages!.Refs[0].Value), c).ConfigureAwait(false);
                await t.WriteAsync(dir + DisplifAbi.XENDISPL_FIELD_REQ_CHANNEL, Text(channel.RequestPort.Value), c).ConfigureAwait(false);
                await t.WriteAsync(dir + DisplifAbi.XENDISPL_FIELD_EVT_RING_REF, Text(channel.Pages.Refs[1].Value), c).ConfigureAwait(false);
                await t.WriteAsync(dir + DisplifAbi.XENDISPL_FIELD_EVT_CHANNEL, Text(channel.EventPort.Value), c).ConfigureAwait(false);
            }
        }, ct).ConfigureAwait(false);

        static string Text(uint v) => v.ToString(CultureInfo.InvariantCulture);
    }

    private void Start()
    {
        foreach (var channel in _channels)
            channel.Start(string.Create(CultureInfo.InvariantCulture, $"displif-fe {Device.FrontendId.Value}/{Device.DeviceId}/{channel.Index}"));
    }

    /// <summary>The xenbus device.</summary>
    public XenbusFrontendDevice Device { get; }

    /// <summary>The frontend's process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The connectors of the device (from xenstore).</summary>
    public IReadOnlyList<DisplifConnector> Connectors { get; }

    /// <summary>Whether <c>be-alloc</c> is 1: <see cref="CreateBackendBufferAsync"/> may be used.</summary>
    public bool BackendAllocates { get; }

    /// <summary>How long a request waits for its response (default <see cref="DefaultRequestTimeout"/>).</summary>
    public TimeSpan RequestTimeout { get; set; } = DefaultRequestTimeout;

    /// <summary>Events dropped because their id was not the next expected one (displif note 3, docs/design.md).</summary>
    /// <param name="connector">The connector's index.</param>
    public int EventIdMismatches(int connector) => Channel(connector).EventIdMismatches;

    /// <summary>Events accepted on a connector (the next expected event id).</summary>
    /// <param name="connector">The connector's index.</param>
    public int EventsReceived(int connector) => Channel(connector).EventsReceived;

    /// <summary>The buffers created and not yet destroyed.</summary>
    public int BufferCount
    {
        get { lock (_gate) return _buffers.Count; }
    }

    internal long RingAddress(int connector) => Channel(connector).RingAddress;

    private DisplifFrontendChannel Channel(int connector)
    {
        if ((uint)connector >= (uint)_channels.Length) throw new ArgumentOutOfRangeException(nameof(connector));
        return _channels[connector];
    }

    /// <summary>Sends a raw request on a connector's ring and returns the backend's response, whatever its
    /// status. The frontend sets the request's id.</summary>
    /// <param name="connector">The connector whose ring carries it.</param>
    /// <param name="request">The request.</param>
    /// <param name="cancellationToken">Cancels the wait (the request stays sent).</param>
    /// <exception cref="TimeoutException">No response within <see cref="RequestTimeout"/>.</exception>
    public Task<xendispl_resp> SendRequestAsync(int connector, xendispl_req request, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _closed) != 0, this);
        return Channel(connector).SendAsync(request, RequestTimeout, cancellationToken);
    }

    private async Task<xendispl_resp> CallAsync(int connector, xendispl_req request, CancellationToken ct)
    {
        xendispl_resp response = await SendRequestAsync(connector, request, ct).ConfigureAwait(false);
        if (response.status != 0) throw new DisplifRequestException(request.operation, response.status);
        return response;
    }

    private ulong NextCookie() => (ulong)Interlocked.Add(ref _nextCookie, 0x40);

    /// <summary>Creates a frontend-allocated buffer (DBUF_CREATE without REQ_ALLOC, DP03): zeroed pages
    /// granted (writable) to the backend, and a page directory chain listing their refs.</summary>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="bpp">Bits per pixel.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="DisplifRequestException">The backend refused.</exception>
    public Task<DisplifBuffer> CreateBufferAsync(int width, int height, int bpp, CancellationToken cancellationToken = default) =>
        CreateAsync(width, height, bpp, backend: false, cancellationToken);

    /// <summary>Creates a backend-allocated buffer (be-alloc, DBUF_CREATE with XENDISPL_DBUF_FLG_REQ_ALLOC,
    /// DP03): only the directory pages are granted; the backend fills them with refs it grants, which
    /// the frontend then maps.</summary>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="bpp">Bits per pixel.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="DisplifRequestException">The backend refused.</exception>
    /// <exception cref="InvalidOperationException">The device is not be-alloc.</exception>
    public Task<DisplifBuffer> CreateBackendBufferAsync(int width, int height, int bpp, CancellationToken cancellationToken = default)
    {
        if (!BackendAllocates) throw new InvalidOperationException("the device's be-alloc is not 1");
        return CreateAsync(width, height, bpp, backend: true, cancellationToken);
    }

    private async Task<DisplifBuffer> CreateAsync(int width, int height, int bpp, bool backend, CancellationToken ct)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(height);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(bpp);
        int pitch = (int)(((long)width * bpp + 7) / 8);
        long size = (long)pitch * height;
        if (size > int.MaxValue - XenPage.Size) throw new ArgumentOutOfRangeException(nameof(width), "the buffer is too large");
        int pages = (int)((size + XenPage.Size - 1) / XenPage.Size);
        int dirPages = (pages + RefsPerDirectoryPage - 1) / RefsPerDirectoryPage;
        DomainId be = Device.BackendId;

        SharedPages? data = null;
        SharedPages directory = _sharer.Share(be, dirPages);
        GrantMapping? mapped = null;
        try
        {
            if (!backend) data = _sharer.Share(be, pages);
            // Chain the directory pages: gref_dir_next_page, then the refs (left 0 for the backend to fill).
            Span<byte> dir = directory.Memory.Span;
            for (int d = 0; d < dirPages; d++)
            {
                Span<uint> words = MemoryMarshal.Cast<byte, uint>(dir.Slice(d * XenPage.Size, XenPage.Size));
                words[0] = d + 1 < dirPages ? directory.Refs[d + 1].Value : 0;
                if (data is not null)
                {
                    int first = d * RefsPerDirectoryPage, n = Math.Min(RefsPerDirectoryPage, pages - first);
                    for (int i = 0; i < n; i++) words[1 + i] = data.Refs[first + i].Value;
                }
            }

            ulong cookie = NextCookie();
            var request = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_DBUF_CREATE };
            request.op.dbuf_create = new xendispl_dbuf_create_req
            {
                dbuf_cookie = cookie, width = (uint)width, height = (uint)height, bpp = (uint)bpp, buffer_sz = (uint)size,
                flags = backend ? DisplifAbi.XENDISPL_DBUF_FLG_REQ_ALLOC : 0, gref_directory = directory.Refs[0].Value, data_ofs = 0,
            };
            await CallAsync(0, request, ct).ConfigureAwait(false);

            GrantRef[] refs;
            if (backend)
            {
                refs = new GrantRef[pages];
                for (int d = 0; d < dirPages; d++)
                {
                    ReadOnlySpan<uint> words = MemoryMarshal.Cast<byte, uint>(directory.Memory.Span.Slice(d * XenPage.Size, XenPage.Size));
                    int first = d * RefsPerDirectoryPage, n = Math.Min(RefsPerDirectoryPage, pages - first);
                    for (int i = 0; i < n; i++) refs[first + i] = new GrantRef(words[1 + i]);
                }
                mapped = _gntdev.Map(be, refs);
            }
            else
            {
                refs = [.. data!.Refs];
            }
            var buffer = new DisplifBuffer(cookie, width, height, bpp, pitch, (int)size, directory, data, mapped, refs);
            lock (_gate) _buffers.Add(buffer);
            return buffer;
        }
        catch
        {
            mapped?.Dispose();
            data?.Dispose();
            directory.Dispose();
            throw;
        }
    }

    /// <summary>Attaches a framebuffer to a buffer (FB_ATTACH, DP04), the buffer's size by default.</summary>
    /// <param name="buffer">The buffer.</param>
    /// <param name="fourCC">The pixel format (<see cref="DisplifPixelFormat"/>).</param>
    /// <param name="width">Width, or 0 for the buffer's.</param>
    /// <param name="height">Height, or 0 for the buffer's.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="DisplifRequestException">The backend refused.</exception>
    public async Task<DisplifFramebuffer> AttachFramebufferAsync(DisplifBuffer buffer, uint fourCC, int width = 0, int height = 0,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        if (width == 0) width = buffer.Width;
        if (height == 0) height = buffer.Height;
        ulong cookie = NextCookie();
        var request = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_FB_ATTACH };
        request.op.fb_attach = new xendispl_fb_attach_req
        {
            dbuf_cookie = buffer.Cookie, fb_cookie = cookie, width = (uint)width, height = (uint)height, pixel_format = fourCC,
        };
        await CallAsync(0, request, cancellationToken).ConfigureAwait(false);
        return new DisplifFramebuffer(cookie, buffer, width, height, fourCC);
    }

    /// <summary>SET_CONFIG (DP05): shows <paramref name="framebuffer"/> on a connector at (0, 0) with its
    /// size (a present, displif note 1, docs/design.md), or with null turns the connector off (all fields zero).</summary>
    /// <param name="connector">The connector's index.</param>
    /// <param name="framebuffer">The framebuffer, or null.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="DisplifRequestException">The backend refused.</exception>
    public async Task SetConfigAsync(int connector, DisplifFramebuffer? framebuffer, CancellationToken cancellationToken = default)
    {
        var request = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_SET_CONFIG };
        if (framebuffer is not null)
        {
            request.op.set_config = new xendispl_set_config_req
            {
                fb_cookie = framebuffer.Cookie, x = 0, y = 0, width = (uint)framebuffer.Width, height = (uint)framebuffer.Height,
                bpp = (uint)framebuffer.Buffer.Bpp,
            };
        }
        await CallAsync(connector, request, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>PG_FLIP (DP05): asks the backend to show <paramref name="framebuffer"/> and completes when
    /// its XENDISPL_EVT_PG_FLIP arrives (the backend's vblank).</summary>
    /// <param name="connector">The connector's index.</param>
    /// <param name="framebuffer">The framebuffer.</param>
    /// <param name="cancellationToken">Cancels the waits.</param>
    /// <exception cref="DisplifRequestException">The backend refused.</exception>
    public async Task PageFlipAsync(int connector, DisplifFramebuffer framebuffer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        var channel = Channel(connector);
        Task flipped = channel.WaitForFlipAsync(framebuffer.Cookie, cancellationToken);
        try
        {
            var request = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_PG_FLIP };
            request.op.pg_flip.fb_cookie = framebuffer.Cookie;
            await CallAsync(connector, request, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            channel.ForgetFlip(flipped);
            throw;
        }
        await flipped.ConfigureAwait(false);   // cancellation ends it and forgets the waiter
    }

    /// <summary>FB_DETACH (DP04).</summary>
    /// <param name="framebuffer">The framebuffer.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="DisplifRequestException">The backend refused.</exception>
    public async Task DetachFramebufferAsync(DisplifFramebuffer framebuffer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        var request = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_FB_DETACH };
        request.op.fb_detach.fb_cookie = framebuffer.Cookie;
        await CallAsync(0, request, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>DBUF_DESTROY (DP04): the backend answers once it released the buffer; then the frontend
    /// frees its pages. A backend-allocated buffer is unmapped first. The pages are freed whatever the
    /// answer (as Linux does after its timeout), and the error is thrown after that.</summary>
    /// <param name="buffer">The buffer.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="DisplifRequestException">The backend answered an error.</exception>
    public async Task DestroyBufferAsync(DisplifBuffer buffer, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(buffer);
        lock (_gate)
            if (!_buffers.Remove(buffer)) throw new InvalidOperationException("the buffer is not one of this frontend's");
        buffer.UnmapBackendPages();
        var request = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_DBUF_DESTROY };
        request.op.dbuf_destroy.dbuf_cookie = buffer.Cookie;
        try
        {
            await CallAsync(0, request, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            buffer.Free();
        }
    }

    /// <summary>GET_EDID (DP05): grants a buffer of one page, asks the backend to fill it, returns the EDID.</summary>
    /// <param name="connector">The connector's index.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <exception cref="DisplifRequestException">The backend refused.</exception>
    public async Task<byte[]> GetEdidAsync(int connector, CancellationToken cancellationToken = default)
    {
        using SharedPages directory = _sharer.Share(Device.BackendId, 1);
        using SharedPages edid = _sharer.Share(Device.BackendId, 1);
        Span<uint> words = MemoryMarshal.Cast<byte, uint>(directory.Memory.Span);
        words[0] = 0;
        words[1] = edid.Refs[0].Value;
        var request = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_GET_EDID };
        request.op.get_edid = new xendispl_get_edid_req { buffer_sz = XenPage.Size, gref_directory = directory.Refs[0].Value };
        xendispl_resp response = await CallAsync(connector, request, cancellationToken).ConfigureAwait(false);
        int size = (int)Math.Min(response.op.get_edid.edid_sz, (uint)XenPage.Size);
        return edid.Memory.Span[..size].ToArray();
    }

    /// <summary>Closes the device (Closing, wait until the backend let go, Closed: XB02), then stops the
    /// threads and frees every buffer, page and port.</summary>
    /// <param name="cancellationToken">Cancels the wait for the backend (then everything is freed anyway).</param>
    public async Task CloseAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        try
        {
            await Device.CloseAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await ReleaseAsync().ConfigureAwait(false);
        }
    }

    private async Task ReleaseAsync()
    {
        foreach (var channel in _channels) channel.RequestStop();
        await Task.WhenAll(_channels.Select(c => c.Completed)).ConfigureAwait(false);
        List<DisplifBuffer> buffers;
        lock (_gate)
        {
            buffers = [.. _buffers];
            _buffers.Clear();
        }
        foreach (var b in buffers) b.Free();
        foreach (var channel in _channels) channel.Dispose();
        _gntdev.Dispose();
        _sharer.Dispose();
        await Device.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Closes the device if it is open (waiting at most the device's
    /// <see cref="XenbusFrontendDevice.CloseTimeout"/> for the backend) and frees everything. Does not
    /// dispose the client.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0) return;
        await Device.DisposeAsync().ConfigureAwait(false);   // closes with its own timeout
        await ReleaseAsync().ConfigureAwait(false);
    }
}
