namespace XenShare.Displif;

/// <summary>
/// A framebuffer that <see cref="DisplifBackend"/> hands to its <see cref="IDisplaySink"/> (FB_ATTACH, spec
/// DP04): a dma-buf with its geometry and pixel format, plus where its pages come from. The backend creates
/// one object per attach, so a sink may key its own state on the object (or keep it in
/// <see cref="SinkState"/>) even when the frontend reuses cookies.
/// </summary>
public sealed class DisplayFramebuffer
{
    /// <summary>Creates the description of a framebuffer.</summary>
    /// <param name="fbCookie">The frontend's framebuffer cookie.</param>
    /// <param name="dbufCookie">The frontend's buffer cookie.</param>
    /// <param name="dmaBufFd">The dma-buf fd in the backend's process (see <see cref="DmaBufFd"/>).</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="fourCC">The DRM pixel format.</param>
    /// <param name="pitch">Bytes per row.</param>
    /// <param name="offset">Offset of the first pixel in the buffer.</param>
    /// <param name="pageCount">The buffer's pages.</param>
    /// <param name="sourceDomain">The domain that granted <paramref name="sourceRefs"/>.</param>
    /// <param name="sourceRefs">The grant refs of the buffer's pages, in order.</param>
    public DisplayFramebuffer(ulong fbCookie, ulong dbufCookie, int dmaBufFd, int width, int height, uint fourCC, int pitch,
        int offset, int pageCount, DomainId sourceDomain, IReadOnlyList<GrantRef> sourceRefs)
    {
        FbCookie = fbCookie;
        DbufCookie = dbufCookie;
        DmaBufFd = dmaBufFd;
        Width = width;
        Height = height;
        FourCC = fourCC;
        Pitch = pitch;
        Offset = offset;
        PageCount = pageCount;
        SourceDomain = sourceDomain;
        SourceRefs = sourceRefs;
    }

    /// <summary>The frontend's framebuffer cookie.</summary>
    public ulong FbCookie { get; }

    /// <summary>The frontend's buffer cookie.</summary>
    public ulong DbufCookie { get; }

    /// <summary>The dma-buf fd in the backend's process. It is open during
    /// <see cref="IDisplaySink.AttachAsync"/> only: a sink that keeps the buffer imports it or dups the fd
    /// there, and lets go in <see cref="IDisplaySink.DetachAsync"/>.</summary>
    public int DmaBufFd { get; }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The DRM pixel format (<see cref="DisplifPixelFormat"/>).</summary>
    public uint FourCC { get; }

    /// <summary>Bytes per row (the buffer's pitch).</summary>
    public int Pitch { get; }

    /// <summary>Offset of the first pixel in the buffer (the buffer's <c>data_ofs</c>).</summary>
    public int Offset { get; }

    /// <summary>The buffer's pages.</summary>
    public int PageCount { get; }

    /// <summary>The domain that granted <see cref="SourceRefs"/> (the frontend, or the backend itself for
    /// a backend-allocated buffer).</summary>
    public DomainId SourceDomain { get; }

    /// <summary>The grant refs of the buffer's pages, in order.</summary>
    public IReadOnlyList<GrantRef> SourceRefs { get; }

    /// <summary>The bytes of the picture: <see cref="Pitch"/> times <see cref="Height"/>.</summary>
    public int FrameBytes => Pitch * Height;

    /// <summary>Free for the sink's own per-framebuffer state.</summary>
    public object? SinkState { get; set; }
}
