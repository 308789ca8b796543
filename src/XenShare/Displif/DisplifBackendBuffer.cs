using XenShare.Api;

namespace XenShare.Displif;

/// <summary>One display buffer a backend holds for a frontend (DBUF_CREATE): either a dma-buf exported
/// from the frontend's refs, or a local buffer granted to the frontend (be-alloc).</summary>
/// <remarks>Owned by its <see cref="DisplifBackendConnection"/>; touched under its request lock, released
/// once.</remarks>
internal sealed class DisplifBackendBuffer
{
    public required ulong Cookie { get; init; }
    public required int Width { get; init; }
    public required int Height { get; init; }
    public required int Bpp { get; init; }
    public required int Pitch { get; init; }
    public required int Offset { get; init; }
    public required int PageCount { get; init; }
    public required DomainId SourceDomain { get; init; }
    public required GrantRef[] SourceRefs { get; init; }

    /// <summary>The export of the frontend's refs (frontend-allocated buffers).</summary>
    public ExportedDmaBuf? Export { get; init; }

    /// <summary>The local buffer (backend-allocated buffers).</summary>
    public IDisplifLocalBuffer? Local { get; init; }

    /// <summary>The grants of <see cref="Local"/> to the frontend (IMP_TO_REFS).</summary>
    public ImportedDmaBuf? FrontendImport { get; init; }

    public int DmaBufFd => Export?.Fd ?? Local!.DmaBufFd;

    /// <summary>Ends the frontend's grants, starts the release wait while the fd is open (displif note 5, docs/design.md), closes
    /// the fd; the task ends when the dma-buf is released (true) or <paramref name="timeout"/> passed, and
    /// frees a local backing afterwards either way.</summary>
    public async Task<bool> ReleaseAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (FrontendImport is not null)
        {
            try
            {
                FrontendImport.Release();
            }
            catch (XenShareException)
            {
                // Already gone (the kernel ended it with the fd): nothing more to end.
            }
        }

        if (Local is not null)
        {
            try
            {
                return await Local.CloseAndWaitReleasedAsync(timeout, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                Local.Dispose();
            }
        }

        ExportedDmaBuf export = Export!;
        Task<bool> wait;
        try
        {
            wait = export.WaitForReleaseAsync(timeout, cancellationToken);
        }
        finally
        {
            export.Close();
        }
        try
        {
            return await wait.ConfigureAwait(false);
        }
        catch (XenShareException)
        {
            return true;   // the wait could not find the buffer any more: it is gone
        }
    }
}
