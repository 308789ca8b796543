namespace XenShare.Displif;

/// <summary>
/// Where <see cref="DisplifBackend"/> sends framebuffers: a display, a compositor, a recorder. The backend
/// attaches a framebuffer at FB_ATTACH, presents it at SET_CONFIG with a framebuffer (a mode set is a
/// present: displif note 1 in docs/design.md) and at PG_FLIP, disables a connector at SET_CONFIG with cookie
/// 0, and detaches at FB_DETACH, DBUF_DESTROY or teardown.
/// </summary>
/// <remarks>
/// The backend calls a sink of one device from that device's ring threads, one call at a time (requests
/// are serialized per device), and waits for each call: a sink must answer well within the frontend's
/// 3 s budget per request. A framebuffer is detached exactly once for each successful attach. A sink that
/// keeps a reference to the dma-buf after <see cref="DetachAsync"/> (a slow importer) delays DBUF_DESTROY's
/// answer (spec DP04) - up to <see cref="DisplifBackendOptions.DestroyAnswerBudget"/>.
/// </remarks>
public interface IDisplaySink
{
    /// <summary>Takes a framebuffer (import or dup <see cref="DisplayFramebuffer.DmaBufFd"/> now). An
    /// exception refuses the FB_ATTACH (the frontend gets -EINVAL, or the errno of a
    /// <see cref="Api.XenShareException"/>).</summary>
    /// <param name="framebuffer">The framebuffer.</param>
    /// <param name="cancellationToken">Cancelled when the device disconnects.</param>
    ValueTask AttachAsync(DisplayFramebuffer framebuffer, CancellationToken cancellationToken);

    /// <summary>Shows an attached framebuffer on a connector. An exception answers the request with an
    /// error status.</summary>
    /// <param name="connector">The connector's index.</param>
    /// <param name="framebuffer">The framebuffer (attached).</param>
    /// <param name="cancellationToken">Cancelled when the device disconnects.</param>
    ValueTask PresentAsync(int connector, DisplayFramebuffer framebuffer, CancellationToken cancellationToken);

    /// <summary>Turns a connector off (SET_CONFIG with fb_cookie 0).</summary>
    /// <param name="connector">The connector's index.</param>
    /// <param name="cancellationToken">Cancelled when the device disconnects.</param>
    ValueTask DisableAsync(int connector, CancellationToken cancellationToken);

    /// <summary>Lets go of a framebuffer. Not cancellable; an exception is swallowed by the backend (the
    /// framebuffer counts as detached).</summary>
    /// <param name="framebuffer">The framebuffer (attached).</param>
    ValueTask DetachAsync(DisplayFramebuffer framebuffer);
}
