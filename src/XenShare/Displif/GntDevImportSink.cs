using XenShare.Api;

namespace XenShare.Displif;

/// <summary>
/// An <see cref="IDisplaySink"/> that works purely through the seam, on the emulator and on real Xen: at
/// attach it imports the dma-buf with gntdev's IMP_TO_REFS naming its own domain (the kernel attaches and
/// maps the buffer as a display device would) and maps the refs that import returned with a second gntdev
/// mapping; at each present it reads the frame through that mapping and raises <see cref="FrameShown"/>.
/// When that mapping fails on a backend (a kernel that will not grant pages it maps from another domain),
/// it falls back to a gntdev mapping of the buffer's source refs (<see cref="DisplayFramebuffer.SourceRefs"/>)
/// and says so in <see cref="DisplayFrame.Path"/> and <see cref="LastPath"/>.
/// </summary>
/// <remarks>
/// <para>The sink keeps the import (its hold on the dma-buf) from attach to detach, so a DBUF_DESTROY's
/// release waits for its detach, as it would for a real importer. It uses a gntdev file of its own (imports
/// are keyed by fd number per gntdev file, and the backend's be-alloc path imports the same fds).</para>
/// <para>Lock: <c>_gate</c> guards the counters and <c>_shown</c>; a leaf, never held across an ioctl or
/// the <see cref="FrameShown"/> callback.</para>
/// </remarks>
public sealed class GntDevImportSink : IDisplaySink, IDisposable
{
    private readonly GrantDevice _gntdev;
    private readonly Lock _gate = new();
    private readonly Dictionary<int, DisplayFramebuffer?> _shown = [];
    private int _attached;
    private long _frames;
    private int _lastPath = -1;

    /// <summary>Opens gntdev in <paramref name="process"/>.</summary>
    /// <param name="process">The backend's process (the dma-bufs' fds are in it).</param>
    /// <param name="self">The process's domain (the import names it).</param>
    public GntDevImportSink(IGuestProcess process, DomainId self)
    {
        ArgumentNullException.ThrowIfNull(process);
        Self = self;
        _gntdev = GrantDevice.Open(process);
    }

    /// <summary>The sink's domain.</summary>
    public DomainId Self { get; }

    /// <summary>Skip the self-import mapping and read through the source refs (to exercise the fallback).</summary>
    public bool PreferSourceRefs { get; init; }

    /// <summary>Raised on the backend's ring thread for each present, with the pixels as the sink read
    /// them; they are valid during the call only. Must not block for long (the frontend waits).</summary>
    public event DisplayFrameHandler? FrameShown;

    /// <summary>Raised when a connector is turned off (SET_CONFIG with cookie 0), with its index.</summary>
    public event Action<int>? ConnectorDisabled;

    /// <summary>The framebuffers attached now.</summary>
    public int AttachedCount
    {
        get { lock (_gate) return _attached; }
    }

    /// <summary>The frames presented so far.</summary>
    public long FrameCount
    {
        get { lock (_gate) return _frames; }
    }

    /// <summary>The path of the last attach's mapping, or null before the first.</summary>
    public FramePath? LastPath
    {
        get
        {
            int p = Volatile.Read(ref _lastPath);
            return p < 0 ? null : (FramePath)p;
        }
    }

    /// <summary>The framebuffer a connector shows now (null when off or never presented).</summary>
    /// <param name="connector">The connector's index.</param>
    public DisplayFramebuffer? ShownOn(int connector)
    {
        lock (_gate) return _shown.GetValueOrDefault(connector);
    }

    /// <inheritdoc/>
    public ValueTask AttachAsync(DisplayFramebuffer framebuffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        ImportedDmaBuf? import = null;
        GrantMapping? map = null;
        FramePath path = FramePath.SelfImport;
        try
        {
            import = _gntdev.ImportDmaBuf(framebuffer.DmaBufFd, framebuffer.PageCount, Self);
            if (!PreferSourceRefs)
            {
                try
                {
                    map = _gntdev.Map(Self, import.Refs, writable: false);
                }
                catch (XenShareException)
                {
                    map = null;   // this backend will not map its own import: read through the source refs
                }
            }
            if (map is null)
            {
                path = FramePath.SourceRefs;
                GrantRef[] source = [.. framebuffer.SourceRefs];
                map = _gntdev.Map(framebuffer.SourceDomain, source, writable: false);
            }
        }
        catch
        {
            map?.Dispose();
            if (import is not null) ReleaseQuietly(import);
            throw;
        }
        framebuffer.SinkState = new Held(import, map, path);
        Volatile.Write(ref _lastPath, (int)path);
        lock (_gate) _attached++;
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask PresentAsync(int connector, DisplayFramebuffer framebuffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.SinkState is not Held held) throw new InvalidOperationException("the framebuffer is not attached to this sink");
        lock (_gate)
        {
            _shown[connector] = framebuffer;
            _frames++;
        }
        var handler = FrameShown;
        if (handler is not null)
        {
            ReadOnlySpan<byte> all = held.Map.ReadOnlyMemory.Span;
            int start = Math.Min(framebuffer.Offset, all.Length);
            int length = Math.Min(framebuffer.FrameBytes, all.Length - start);
            var frame = new DisplayFrame(connector, framebuffer, all.Slice(start, length), held.Path);
            handler(in frame);
        }
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask DisableAsync(int connector, CancellationToken cancellationToken)
    {
        lock (_gate) _shown.Remove(connector);
        ConnectorDisabled?.Invoke(connector);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask DetachAsync(DisplayFramebuffer framebuffer)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.SinkState is not Held held) return ValueTask.CompletedTask;
        framebuffer.SinkState = null;
        lock (_gate)
        {
            _attached--;
            foreach (var (connector, shown) in _shown.ToArray())
                if (ReferenceEquals(shown, framebuffer)) _shown.Remove(connector);
        }
        held.Map.Dispose();                             // unmap before the import's grants end
        if (held.Import is not null) ReleaseQuietly(held.Import);
        return ValueTask.CompletedTask;
    }

    private static void ReleaseQuietly(ImportedDmaBuf import)
    {
        try
        {
            import.Release();
        }
        catch (XenShareException)
        {
            // The kernel let go already.
        }
    }

    /// <summary>Closes the sink's gntdev file (detach every framebuffer first).</summary>
    public void Dispose() => _gntdev.Dispose();

    private sealed record Held(ImportedDmaBuf? Import, GrantMapping Map, FramePath Path);
}
