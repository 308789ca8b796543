using XenShare.Api;

namespace XenShare.Displif;

/// <summary>Settings of a <see cref="DisplifBackend"/>.</summary>
public sealed class DisplifBackendOptions
{
    /// <summary>The default <see cref="MaxBufferPages"/>: 8192 pages (32 MiB, a 3840x2160 XRGB8888 buffer).</summary>
    public const int DefaultMaxBufferPages = 8192;

    /// <summary>The most pages one DBUF_CREATE may name; a larger <c>buffer_sz</c> is refused with -E2BIG
    /// before anything is mapped (DP06).</summary>
    public int MaxBufferPages { get; init; } = DefaultMaxBufferPages;

    /// <summary>The most buffers one device may hold at once; more are refused with -ENOMEM.</summary>
    public int MaxBuffers { get; init; } = 64;

    /// <summary>The most framebuffers one device may hold at once; more are refused with -ENOMEM.</summary>
    public int MaxFramebuffers { get; init; } = 128;

    /// <summary>The backing of the dma-buf exported from a frontend's refs (EXP_FROM_REFS flags);
    /// <see cref="DmaBufBacking.None"/> (ballooned pages) by default.</summary>
    public DmaBufBacking ExportBacking { get; init; } = DmaBufBacking.None;

    /// <summary>The vblank period that paces XENDISPL_EVT_PG_FLIP events (displif note 2, docs/design.md: the backend sets the
    /// frame rate). Default 1/60 s; <see cref="TimeSpan.Zero"/> sends each event at once.</summary>
    public TimeSpan FrameInterval { get; init; } = TimeSpan.FromTicks(TimeSpan.TicksPerSecond / 60);

    /// <summary>How long DBUF_DESTROY waits for the buffer's release before it answers -EBUSY (the release
    /// then completes in the background). Default 2.5 s: inside the frontend's 3 s budget per request
    /// (displif note 4, docs/design.md).</summary>
    public TimeSpan DestroyAnswerBudget { get; init; } = TimeSpan.FromMilliseconds(2500);

    /// <summary>How long a release that outlived <see cref="DestroyAnswerBudget"/> (and the releases at
    /// teardown) is waited for before the backend gives up waiting (the buffer is then left to its last
    /// holder). Default 30 s.</summary>
    public TimeSpan ReleaseTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How often a ring thread wakes to see whether it must stop (the seam's poll has no other
    /// way to be interrupted). Default 100 ms; it bounds how long a teardown waits for the threads.</summary>
    public TimeSpan StopPollInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Whether GET_EDID is served (a base EDID block for the connector's resolution); when false it
    /// is answered -EOPNOTSUPP. Default true.</summary>
    public bool ServeEdid { get; init; } = true;

    /// <summary>The allocator for be-alloc buffers; null makes the backend create (and own) a
    /// <see cref="GntAllocBufferAllocator"/>.</summary>
    public IDisplifBufferAllocator? Allocator { get; init; }
}
