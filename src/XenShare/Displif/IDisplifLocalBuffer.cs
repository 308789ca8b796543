namespace XenShare.Displif;

/// <summary>A buffer the backend allocated for a frontend (be-alloc and XENDISPL_DBUF_FLG_REQ_ALLOC, spec
/// DP03): a local dma-buf that the backend grants to the frontend with IMP_TO_REFS and hands to its sink.
/// Made by an <see cref="IDisplifBufferAllocator"/>.</summary>
/// <remarks>Release order (the backend follows it): the frontend's import and the sink let go, then
/// <see cref="CloseAndWaitReleasedAsync"/>, then <see cref="IDisposable.Dispose"/>, which frees the
/// backing.</remarks>
public interface IDisplifLocalBuffer : IDisposable
{
    /// <summary>The dma-buf fd in the backend's process, open until
    /// <see cref="CloseAndWaitReleasedAsync"/> or <see cref="IDisposable.Dispose"/>.</summary>
    int DmaBufFd { get; }

    /// <summary>The buffer's pages.</summary>
    int PageCount { get; }

    /// <summary>The domain that granted <see cref="SourceRefs"/> (what a sink may map as a fallback).</summary>
    DomainId SourceDomain { get; }

    /// <summary>Grant refs of the buffer's pages, in order (empty when the backing has none).</summary>
    IReadOnlyList<GrantRef> SourceRefs { get; }

    /// <summary>Starts waiting for the dma-buf's release while the fd is still open (EXP_WAIT_RELEASED finds
    /// the buffer by fd: displif note 5, docs/design.md), closes the fd, and waits at most <paramref name="timeout"/>.</summary>
    /// <param name="timeout">How long to wait (<see cref="Timeout.InfiniteTimeSpan"/>: until the release).</param>
    /// <param name="cancellationToken">Ends the caller's wait (the fd is closed either way).</param>
    /// <returns>True when the dma-buf was released in time.</returns>
    Task<bool> CloseAndWaitReleasedAsync(TimeSpan timeout, CancellationToken cancellationToken = default);
}
