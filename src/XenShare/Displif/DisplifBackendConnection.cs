using DisplifAbi = XenShare.Abi.Displif;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Xenbus;

namespace XenShare.Displif;

/// <summary>
/// One connection of a <see cref="DisplifBackend"/> to a frontend instance (from ConnectAsync to
/// DisconnectAsync): the connectors' channels, and the device's buffers and framebuffers, which every
/// connector's ring may name (Linux sends buffer requests on connector 0's ring and flips on each
/// connector's own).
/// </summary>
/// <remarks>
/// <para>Lock: <c>_requestLock</c> serializes the handling of requests across the connectors' threads
/// and guards <c>_buffers</c>, <c>_framebuffers</c> and <c>_releasing</c>. It is held across the ioctls
/// and sink calls of one request (requests are rare and short; Linux has one in flight per ring), but
/// never across DBUF_DESTROY's wait for the release, and never across an await of a xenstore request. It
/// sits above the seam, outside every lock of docs/design.md's order (taken before any of them).</para>
/// <para>Teardown runs once (<see cref="TeardownAsync"/>): stop the threads, detach every framebuffer
/// from the sink, release every buffer (waiting for the releases), unbind the ports, unmap the pages.</para>
/// </remarks>
internal sealed class DisplifBackendConnection : IDisposable
{
    /// <summary>The ring's entry: the larger of xendispl_req and xendispl_resp (both 64 bytes).</summary>
    public static readonly int EntrySize = Math.Max(Unsafe.SizeOf<xendispl_req>(), Unsafe.SizeOf<xendispl_resp>());

    private const int EOPNOTSUPP = 95;
    private static readonly int RefsPerDirectoryPage = (XenPage.Size - 4) / 4;

    private readonly DisplifBackend _owner;
    private readonly Lock _requestLock = new();
    private readonly Dictionary<ulong, DisplifBackendBuffer> _buffers = [];
    private readonly Dictionary<ulong, DisplifBackendFramebuffer> _framebuffers = [];
    private readonly List<Task> _releasing = [];
    private readonly CancellationTokenSource _lifetime = new();
    private readonly Lock _teardownGate = new();
    private Task? _teardown;

    public DisplifBackendConnection(DisplifBackend owner, XenbusBackendDevice device, IGuestProcess process,
        IReadOnlyList<DisplifConnector> connectors, bool backendAllocates)
    {
        _owner = owner;
        Device = device;
        Process = process;
        Connectors = connectors;
        BackendAllocates = backendAllocates;
        Channels = [.. connectors.Select(c => new DisplifBackendChannel(this, c))];
    }

    public XenbusBackendDevice Device { get; }

    public IGuestProcess Process { get; }

    public DisplifBackendOptions Options => _owner.Options;

    public IReadOnlyList<DisplifConnector> Connectors { get; }

    public bool BackendAllocates { get; }

    public DisplifBackendChannel[] Channels { get; }

    public GrantDevice? GrantDevice { get; set; }

    public Exception? FaultError { get; private set; }

    public int BufferCount { get { lock (_requestLock) return _buffers.Count; } }

    public int FramebufferCount { get { lock (_requestLock) return _framebuffers.Count; } }

    public int PendingReleaseCount { get { lock (_requestLock) return _releasing.Count(t => !t.IsCompleted); } }

    // ------------------------------------------------------------------ connect

    /// <summary>Maps and binds every connector's channels (ConnectAsync; a throw leaves what was set up to
    /// the teardown).</summary>
    public async Task ConnectAsync(CancellationToken ct)
    {
        GrantDevice = GrantDevice.Open(Process);
        DomainId fe = Device.FrontendId;
        foreach (var channel in Channels)
        {
            string dir = Device.FrontendPath + "/" + channel.Index.ToString(CultureInfo.InvariantCulture) + "/";
            uint reqRef = await ReadUIntAsync(dir + DisplifAbi.XENDISPL_FIELD_REQ_RING_REF, ct).ConfigureAwait(false);
            uint reqPort = await ReadUIntAsync(dir + DisplifAbi.XENDISPL_FIELD_REQ_CHANNEL, ct).ConfigureAwait(false);
            uint evtRef = await ReadUIntAsync(dir + DisplifAbi.XENDISPL_FIELD_EVT_RING_REF, ct).ConfigureAwait(false);
            uint evtPort = await ReadUIntAsync(dir + DisplifAbi.XENDISPL_FIELD_EVT_CHANNEL, ct).ConfigureAwait(false);
            channel.RingMap = GrantDevice.Map(fe, [new GrantRef(reqRef)]);
            channel.EventMap = GrantDevice.Map(fe, [new GrantRef(evtRef)]);
            channel.Evtchn = EventChannels.Open(Process);
            channel.RequestPort = channel.Evtchn.BindInterdomain(fe, new EventPort(reqPort));
            channel.EventPort = channel.Evtchn.BindInterdomain(fe, new EventPort(evtPort));
            channel.Attach();
        }
    }

    private async Task<uint> ReadUIntAsync(string path, CancellationToken ct)
    {
        string text = await Device.Client.ReadStringAsync(path, ct).ConfigureAwait(false);
        if (!uint.TryParse(text.AsSpan().Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out uint value))
            throw new InvalidDataException($"{path} is '{text}', not a number");
        return value;
    }

    /// <summary>Starts the ring threads (once the device is Connected).</summary>
    public void Start()
    {
        lock (_teardownGate)
        {
            if (_teardown is not null) return;
            foreach (var channel in Channels)
                channel.Start(string.Create(CultureInfo.InvariantCulture, $"displif-be {Device.FrontendId.Value}/{Device.DeviceId}/{channel.Index}"));
        }
    }

    // ------------------------------------------------------------------ faults and teardown

    /// <summary>A ring thread hit a protocol error (RG04) or a broken channel: tear the connection down
    /// and ask the frontend to close (Closing).</summary>
    public void Fault(DisplifBackendChannel channel, Exception error)
    {
        FaultError ??= error;
        _owner.OnFault(channel.Index, error);
        _ = TeardownAsync(closeDevice: true);
    }

    /// <summary>Tears down once; later calls return the same task.</summary>
    public Task TeardownAsync(bool closeDevice)
    {
        lock (_teardownGate)
        {
            return _teardown ??= Task.Run(() => TeardownCoreAsync(closeDevice));
        }
    }

    private async Task TeardownCoreAsync(bool closeDevice)
    {
        await _lifetime.CancelAsync().ConfigureAwait(false);
        foreach (var channel in Channels) channel.RequestStop();
        await Task.WhenAll(Channels.Select(c => c.Completed)).ConfigureAwait(false);

        List<DisplifBackendFramebuffer> framebuffers;
        List<DisplifBackendBuffer> buffers;
        List<Task> releasing;
        lock (_requestLock)
        {
            framebuffers = [.. _framebuffers.Values];
            buffers = [.. _buffers.Values];
            _framebuffers.Clear();
            _buffers.Clear();
        }
        foreach (var fb in framebuffers) await DetachQuietlyAsync(fb).ConfigureAwait(false);
        var waits = new List<Task>();
        foreach (var buffer in buffers) waits.Add(ReleaseQuietlyAsync(buffer));
        lock (_requestLock)
        {
            releasing = [.. _releasing];
            _releasing.Clear();
        }
        waits.AddRange(releasing);
        await Task.WhenAll(waits).ConfigureAwait(false);

        foreach (var channel in Channels)
        {
            if (channel.Evtchn is { } evtchn)
            {
                if (channel.RequestPort is { } rp) TryQuietly(() => evtchn.Unbind(rp));
                if (channel.EventPort is { } ep) TryQuietly(() => evtchn.Unbind(ep));
                evtchn.Dispose();
            }
            channel.RingMap?.Dispose();
            channel.EventMap?.Dispose();
        }
        GrantDevice?.Dispose();

        if (closeDevice)
        {
            try
            {
                // RG04: a protocol error closes the device; the walk goes back to InitWait once the
                // frontend has closed too (this write comes before any write of the walk after the
                // disconnect, which waits for this task).
                if (await Device.SwitchStateAsync(XenbusState.Closing, CancellationToken.None).ConfigureAwait(false))
                    _owner.OnStateSwitched(XenbusState.Closing);
            }
            catch (Exception e) when (e is Xenstore.XenstoreException or IOException or ObjectDisposedException)
            {
                // Nobody left to tell.
            }
        }
        Dispose();
    }

    /// <summary>Frees the lifetime source (after the teardown).</summary>
    public void Dispose() => _lifetime.Dispose();

    private static void TryQuietly(Action action)
    {
        try
        {
            action();
        }
        catch (XenShareException)
        {
            // Already gone with the peer.
        }
    }

    private async Task DetachQuietlyAsync(DisplifBackendFramebuffer fb)
    {
        try
        {
            await _owner.Sink.DetachAsync(fb.View).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _owner.OnSinkError(e);
        }
    }

    private async Task ReleaseQuietlyAsync(DisplifBackendBuffer buffer)
    {
        try
        {
            await buffer.ReleaseAsync(Options.ReleaseTimeout).ConfigureAwait(false);
        }
        catch (XenShareException)
        {
            // The kernel already let go.
        }
    }

    // ------------------------------------------------------------------ requests

    /// <summary>Handles one request on <paramref name="channel"/>'s thread and returns its response (same
    /// id and operation; status 0 or a negative errno). A bad request changes nothing (DP06).</summary>
    public xendispl_resp Handle(DisplifBackendChannel channel, in xendispl_req request)
    {
        var response = new xendispl_resp { id = request.id, operation = request.operation };
        int status;
        try
        {
            status = request.operation switch
            {
                DisplifAbi.XENDISPL_OP_DBUF_CREATE => Locked(channel, request, CreateBuffer),
                DisplifAbi.XENDISPL_OP_DBUF_DESTROY => DestroyBuffer(request.op.dbuf_destroy.dbuf_cookie),
                DisplifAbi.XENDISPL_OP_FB_ATTACH => Locked(channel, request, AttachFramebuffer),
                DisplifAbi.XENDISPL_OP_FB_DETACH => Locked(channel, request, DetachFramebuffer),
                DisplifAbi.XENDISPL_OP_SET_CONFIG => Locked(channel, request, SetConfig),
                DisplifAbi.XENDISPL_OP_PG_FLIP => Locked(channel, request, PageFlip),
                DisplifAbi.XENDISPL_OP_GET_EDID => GetEdid(channel, request.op.get_edid, ref response),
                _ => -EOPNOTSUPP,
            };
        }
        catch (XenShareException e)
        {
            status = -(e.Errno > 0 ? e.Errno : Errno.EIO);
        }
        catch (OperationCanceledException)
        {
            status = -Errno.EIO;   // the device is going away
        }
        response.status = status;
        _owner.OnRequestServed(channel.Index, request, status);
        return response;
    }

    private int Locked(DisplifBackendChannel channel, in xendispl_req request, Func<DisplifBackendChannel, xendispl_req, int> handler)
    {
        lock (_requestLock) return handler(channel, request);
    }

    private static int PitchOf(uint width, uint bpp) => (int)(((ulong)width * bpp + 7) / 8);

    private int CreateBuffer(DisplifBackendChannel channel, xendispl_req request)
    {
        xendispl_dbuf_create_req r = request.op.dbuf_create;
        if (r.dbuf_cookie == 0) return -Errno.EINVAL;
        if (_buffers.ContainsKey(r.dbuf_cookie)) return -Errno.EEXIST;
        if (_buffers.Count >= Options.MaxBuffers) return -Errno.ENOMEM;
        if (r.width is 0 or > DisplifConnector.MaxDimension || r.height is 0 or > DisplifConnector.MaxDimension) return -Errno.EINVAL;
        if (r.bpp is not (8 or 16 or 24 or 32)) return -Errno.EINVAL;
        if (r.buffer_sz == 0) return -Errno.EINVAL;
        long pages = ((long)r.buffer_sz + XenPage.Size - 1) / XenPage.Size;
        if (pages > Options.MaxBufferPages) return -Errno.E2BIG;          // DP06: capped before anything is mapped
        int pitch = PitchOf(r.width, r.bpp);
        if ((ulong)r.data_ofs + (ulong)pitch * r.height > r.buffer_sz) return -Errno.EINVAL;   // DP06: sizes

        bool allocate = (r.flags & DisplifAbi.XENDISPL_DBUF_FLG_REQ_ALLOC) != 0;
        if ((r.flags & ~DisplifAbi.XENDISPL_DBUF_FLG_REQ_ALLOC) != 0) return -Errno.EINVAL;
        if (allocate && !BackendAllocates) return -Errno.EINVAL;
        int count = (int)pages;
        DisplifBackendBuffer buffer = allocate ? AllocateForFrontend(r, count, pitch) : ExportFromFrontend(r, count, pitch);
        _buffers.Add(r.dbuf_cookie, buffer);
        return 0;
    }

    private DisplifBackendBuffer ExportFromFrontend(in xendispl_dbuf_create_req r, int count, int pitch)
    {
        GrantRef[] refs = ReadDirectory(r.gref_directory, count, fill: null);
        ExportedDmaBuf export = GrantDevice!.ExportDmaBuf(Device.FrontendId, refs, Options.ExportBacking);
        return new DisplifBackendBuffer
        {
            Cookie = r.dbuf_cookie, Width = (int)r.width, Height = (int)r.height, Bpp = (int)r.bpp, Pitch = pitch,
            Offset = (int)r.data_ofs, PageCount = count, SourceDomain = Device.FrontendId, SourceRefs = refs, Export = export,
        };
    }

    private DisplifBackendBuffer AllocateForFrontend(in xendispl_dbuf_create_req r, int count, int pitch)
    {
        IDisplifLocalBuffer local = _owner.Allocator.Allocate(count);
        ImportedDmaBuf? import = null;
        try
        {
            import = GrantDevice!.ImportDmaBuf(local.DmaBufFd, count, Device.FrontendId);
            GrantRef[] granted = [.. import.Refs];
            ReadDirectory(r.gref_directory, count, fill: granted);
            return new DisplifBackendBuffer
            {
                Cookie = r.dbuf_cookie, Width = (int)r.width, Height = (int)r.height, Bpp = (int)r.bpp, Pitch = pitch,
                Offset = (int)r.data_ofs, PageCount = count, SourceDomain = local.SourceDomain, SourceRefs = [.. local.SourceRefs],
                Local = local, FrontendImport = import,
            };
        }
        catch
        {
            if (import is not null)
            {
                try { import.Release(); } catch (XenShareException) { }
            }
            local.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Walks the frontend's page directory chain from <paramref name="first"/> (DP03): reads
    /// <paramref name="count"/> refs, or (be-alloc) writes <paramref name="fill"/> into it. Each directory
    /// page is mapped, read or written, and unmapped at once; a chain that ends early, or a page that is
    /// not granted to this domain, throws (EINVAL, or the map's errno) having changed nothing of ours.
    /// </summary>
    private GrantRef[] ReadDirectory(uint first, int count, GrantRef[]? fill)
    {
        var refs = fill ?? new GrantRef[count];
        uint page = first;
        int done = 0;
        while (done < count)
        {
            if (page == 0) throw ErrnoMapper.ToException(-Errno.EINVAL, "page directory ends before the buffer's refs");
            using GrantMapping map = GrantDevice!.Map(Device.FrontendId, [new GrantRef(page)], writable: fill is not null);
            ReadOnlySpan<byte> bytes = map.ReadOnlyMemory.Span;
            uint next = MemoryMarshal.Read<uint>(bytes);
            int n = Math.Min(RefsPerDirectoryPage, count - done);
            if (fill is not null)
            {
                Span<uint> slots = MemoryMarshal.Cast<byte, uint>(map.Memory.Span.Slice(4, 4 * n));
                for (int i = 0; i < n; i++) slots[i] = fill[done + i].Value;
            }
            else
            {
                ReadOnlySpan<uint> slots = MemoryMarshal.Cast<byte, uint>(bytes.Slice(4, 4 * n));
                for (int i = 0; i < n; i++) refs[done + i] = new GrantRef(slots[i]);
            }
            done += n;
            page = next;
        }
        return refs;
    }

    /// <summary>DBUF_DESTROY (DP04): the framebuffers on the buffer leave the sink (its hold closed), the
    /// release wait starts while the fd is open (displif note 5, docs/design.md), the fd is closed, and the answer waits for the
    /// release - at most <see cref="DisplifBackendOptions.DestroyAnswerBudget"/>, then -EBUSY while the
    /// release goes on in the background (displif note 4, docs/design.md). The cookie is free again either way.</summary>
    private int DestroyBuffer(ulong cookie)
    {
        DisplifBackendBuffer? buffer;
        List<DisplifBackendFramebuffer> onBuffer = [];
        lock (_requestLock)
        {
            if (!_buffers.Remove(cookie, out buffer)) return -Errno.ENOENT;
            foreach (var fb in _framebuffers.Values)
                if (ReferenceEquals(fb.Buffer, buffer)) onBuffer.Add(fb);
            foreach (var fb in onBuffer) _framebuffers.Remove(fb.Cookie);
            foreach (var fb in onBuffer) Wait(DetachQuietlyAsync(fb));
        }

        Task<bool> release = buffer.ReleaseAsync(Options.ReleaseTimeout);
        lock (_requestLock) _releasing.Add(release);
        Task first = Task.WhenAny(release, Task.Delay(Options.DestroyAnswerBudget, _lifetime.Token)).GetAwaiter().GetResult();
        if (first == release && release.IsCompletedSuccessfully && release.Result) return 0;
        return first == release ? -Errno.EIO : -Errno.EBUSY;
    }

    private int AttachFramebuffer(DisplifBackendChannel channel, xendispl_req request)
    {
        xendispl_fb_attach_req r = request.op.fb_attach;
        if (r.fb_cookie == 0) return -Errno.EINVAL;
        if (!_buffers.TryGetValue(r.dbuf_cookie, out var buffer)) return -Errno.ENOENT;
        if (_framebuffers.ContainsKey(r.fb_cookie)) return -Errno.EEXIST;
        if (_framebuffers.Count >= Options.MaxFramebuffers) return -Errno.ENOMEM;
        int bpp = DisplifPixelFormat.BitsPerPixel(r.pixel_format);
        if (bpp == 0) return -Errno.EINVAL;
        if (r.width == 0 || r.height == 0 || r.height > buffer.Height || (ulong)r.width * (uint)bpp > (ulong)buffer.Pitch * 8) return -Errno.EINVAL;

        var view = new DisplayFramebuffer(r.fb_cookie, r.dbuf_cookie, buffer.DmaBufFd, (int)r.width, (int)r.height, r.pixel_format,
            buffer.Pitch, buffer.Offset, buffer.PageCount, buffer.SourceDomain, buffer.SourceRefs);
        try
        {
            Wait(_owner.Sink.AttachAsync(view, _lifetime.Token));
        }
        catch (XenShareException)
        {
            throw;
        }
        catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
        {
            _owner.OnSinkError(e);
            return -Errno.EINVAL;
        }
        _framebuffers.Add(r.fb_cookie, new DisplifBackendFramebuffer(view, buffer));
        return 0;
    }

    private int DetachFramebuffer(DisplifBackendChannel channel, xendispl_req request)
    {
        if (!_framebuffers.Remove(request.op.fb_detach.fb_cookie, out var fb)) return -Errno.ENOENT;
        Wait(DetachQuietlyAsync(fb));
        return 0;
    }

    private int SetConfig(DisplifBackendChannel channel, xendispl_req request)
    {
        xendispl_set_config_req r = request.op.set_config;
        if (r.fb_cookie == 0)
        {
            Present(() => _owner.Sink.DisableAsync(channel.Index, _lifetime.Token));   // display off
            return 0;
        }
        if (!_framebuffers.TryGetValue(r.fb_cookie, out var fb)) return -Errno.ENOENT;
        if (r.width == 0 || r.height == 0 || (ulong)r.x + r.width > (ulong)fb.View.Width || (ulong)r.y + r.height > (ulong)fb.View.Height)
            return -Errno.EINVAL;
        // Gotcha 1: a mode set with a framebuffer is a present (a static client never flips).
        return Present(() => _owner.Sink.PresentAsync(channel.Index, fb.View, _lifetime.Token));
    }

    private int PageFlip(DisplifBackendChannel channel, xendispl_req request)
    {
        ulong cookie = request.op.pg_flip.fb_cookie;
        if (!_framebuffers.TryGetValue(cookie, out var fb)) return -Errno.ENOENT;
        int status = Present(() => _owner.Sink.PresentAsync(channel.Index, fb.View, _lifetime.Token));
        if (status == 0) channel.QueueFlipEvent(cookie);
        return status;
    }

    private int Present(Func<ValueTask> call)
    {
        try
        {
            Wait(call());
            return 0;
        }
        catch (XenShareException e)
        {
            return -(e.Errno > 0 ? e.Errno : Errno.EIO);
        }
        catch (Exception e) when (e is not OutOfMemoryException and not OperationCanceledException)
        {
            _owner.OnSinkError(e);
            return -Errno.EIO;
        }
    }

    private int GetEdid(DisplifBackendChannel channel, in xendispl_get_edid_req r, ref xendispl_resp response)
    {
        if (!Options.ServeEdid) return -EOPNOTSUPP;
        if (r.buffer_sz < DisplifEdid.Size || r.buffer_sz > DisplifAbi.XENDISPL_EDID_MAX_SIZE) return -Errno.EINVAL;
        var c = channel.Connector;
        if (c.Width > DisplifEdid.MaxDimension || c.Height > DisplifEdid.MaxDimension) return -Errno.EINVAL;
        int pages = (int)((r.buffer_sz + XenPage.Size - 1) / XenPage.Size);
        lock (_requestLock)
        {
            GrantRef[] refs = ReadDirectory(r.gref_directory, pages, fill: null);
            using GrantMapping map = GrantDevice!.Map(Device.FrontendId, refs.AsSpan(0, 1), writable: true);
            DisplifEdid.Write(c.Width, c.Height, string.IsNullOrEmpty(c.UniqueId) ? "Xen display" : c.UniqueId, map.Memory.Span);
        }
        response.op.get_edid.edid_sz = DisplifEdid.Size;
        return 0;
    }

    private static void Wait(ValueTask task)
    {
        if (task.IsCompletedSuccessfully) return;
        task.AsTask().GetAwaiter().GetResult();
    }

    private static void Wait(Task task) => task.GetAwaiter().GetResult();
}
