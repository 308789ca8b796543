using XenShare.Abi;
using XenShare.Api;
using XenShare.Displif;

namespace XenShare.Cli.Demo;

/// <summary>Called by <see cref="GrantCopySink"/> with a frame it copied (on the backend's ring thread).</summary>
/// <param name="pixels">The frame in dom0's own buffer: rows of <paramref name="stride"/> bytes; valid during the
/// call only.</param>
/// <param name="stride">Bytes per row.</param>
/// <param name="frame">The number of the present: 0, 1, 2, ...</param>
internal delegate void CopiedFrameHandler(ReadOnlySpan<byte> pixels, int stride, long frame);

/// <summary>
/// The copying display path of <c>xenshare demo --copy</c>, for comparison with zero-copy scan-out: an
/// <see cref="IDisplaySink"/> that ignores the dma-buf and, at every present, GRANT_COPYs the frame from the
/// frontend's grants (<see cref="DisplayFramebuffer.SourceRefs"/>, one GNTTABOP_copy segment per page) into a
/// dom0 buffer, then hands that buffer to <see cref="Copied"/>. Works for frontend-allocated buffers only (a
/// backend-allocated buffer is dom0's own memory: nothing to copy).
/// </summary>
/// <remarks>The backend calls a sink of one device one call at a time, so one staging buffer serves every
/// framebuffer. Counters are read after the run.</remarks>
internal sealed class GrantCopySink : IDisplaySink, IDisposable
{
    private readonly GrantDevice _gntdev;
    private readonly ProcessBuffer _staging;
    private short[] _statuses = [];
    private long _presents;

    /// <summary>Opens gntdev and allocates the staging buffer in the backend's process.</summary>
    /// <param name="process">The backend's process.</param>
    /// <param name="frameBytes">The largest frame (the staging buffer's size).</param>
    /// <param name="copied">Receives each copied frame.</param>
    public GrantCopySink(IGuestProcess process, int frameBytes, CopiedFrameHandler copied)
    {
        ArgumentNullException.ThrowIfNull(process);
        ArgumentNullException.ThrowIfNull(copied);
        Copied = copied;
        _gntdev = GrantDevice.Open(process);
        try
        {
            _staging = ProcessBuffer.Allocate(process, frameBytes);
        }
        catch
        {
            _gntdev.Dispose();
            throw;
        }
    }

    /// <summary>Receives each copied frame.</summary>
    public CopiedFrameHandler Copied { get; }

    /// <summary>Bytes GRANT_COPY moved so far.</summary>
    public long BytesCopied { get; private set; }

    /// <summary>GNTTABOP_copy segments so far (one per page per frame).</summary>
    public long GrantOps { get; private set; }

    /// <summary>Frames presented.</summary>
    public long Presents => Volatile.Read(ref _presents);

    /// <inheritdoc/>
    public ValueTask AttachAsync(DisplayFramebuffer framebuffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.FrameBytes > _staging.Length || framebuffer.Offset != 0)
            throw new XenShareException(Errno.EINVAL, "the frame does not fit the copy buffer");
        if (framebuffer.SourceRefs.Count * (long)XenPage.Size < framebuffer.FrameBytes)
            throw new XenShareException(Errno.EINVAL, "the framebuffer has no grant refs to copy from (--copy needs frontend-allocated buffers)");
        int pages = XenPage.PagesFor(framebuffer.FrameBytes);
        var segments = new GrantCopySegment[pages];
        for (int i = 0; i < pages; i++)
        {
            long offset = (long)i * XenPage.Size;
            ushort length = (ushort)Math.Min(XenPage.Size, framebuffer.FrameBytes - offset);
            segments[i] = new GrantCopySegment(GrantCopyOperand.Foreign(framebuffer.SourceDomain, framebuffer.SourceRefs[i]),
                GrantCopyOperand.Local(_staging.Address + offset), length);
        }
        if (_statuses.Length < pages) _statuses = new short[pages];
        framebuffer.SinkState = segments;
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask PresentAsync(int connector, DisplayFramebuffer framebuffer, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.SinkState is not GrantCopySegment[] segments) throw new InvalidOperationException("the framebuffer is not attached to this sink");
        _gntdev.Copy(segments, _statuses.AsSpan(0, segments.Length));
        for (int i = 0; i < segments.Length; i++)
            if (_statuses[i] != GntSt.okay) throw new XenShareException(Errno.EIO, $"GRANT_COPY of page {i}: GNTST {_statuses[i]}");
        BytesCopied += framebuffer.FrameBytes;
        GrantOps += segments.Length;
        long frame = Interlocked.Increment(ref _presents) - 1;
        Copied(_staging.Memory.Span[..framebuffer.FrameBytes], framebuffer.Pitch, frame);
        return ValueTask.CompletedTask;
    }

    /// <inheritdoc/>
    public ValueTask DisableAsync(int connector, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    /// <inheritdoc/>
    public ValueTask DetachAsync(DisplayFramebuffer framebuffer)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        framebuffer.SinkState = null;
        return ValueTask.CompletedTask;
    }

    /// <summary>Frees the staging buffer and closes gntdev.</summary>
    public void Dispose()
    {
        _staging.Dispose();
        _gntdev.Dispose();
    }
}
