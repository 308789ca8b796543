using XenShare.Api;

namespace XenShare.Displif;

/// <summary>
/// The default <see cref="IDisplifBufferAllocator"/>: the backend's domain grants its own zeroed pages to
/// itself with gntalloc, and gntdev exports those grants as a dma-buf (a gntdev self-export). That is a
/// local dma-buf on a dom0 without a dma-heap (real Xen's dom0, the pattern of the XD02 conformance
/// scenario) as well as on the emulator.
/// </summary>
/// <remarks>Thread-safe: each allocation uses the shared gntalloc and gntdev files, whose calls are
/// independent ioctls. The allocator owns both files; dispose it after every buffer it made.</remarks>
public sealed class GntAllocBufferAllocator : IDisplifBufferAllocator, IDisposable
{
    private readonly GrantSharer _sharer;
    private readonly GrantDevice _gntdev;

    /// <summary>Opens gntalloc and gntdev in <paramref name="process"/>.</summary>
    /// <param name="process">The backend's process.</param>
    /// <param name="self">The backend's (this) domain.</param>
    public GntAllocBufferAllocator(IGuestProcess process, DomainId self)
    {
        ArgumentNullException.ThrowIfNull(process);
        Self = self;
        _sharer = GrantSharer.Open(process);
        try
        {
            _gntdev = GrantDevice.Open(process);
        }
        catch
        {
            _sharer.Dispose();
            throw;
        }
    }

    /// <summary>The backend's domain (the pages are granted to it).</summary>
    public DomainId Self { get; }

    /// <inheritdoc/>
    public IDisplifLocalBuffer Allocate(int pageCount)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageCount);
        SharedPages pages = _sharer.Share(Self, pageCount);
        try
        {
            ExportedDmaBuf export = _gntdev.ExportDmaBuf(Self, pages.Refs);
            return new Buffer(pages, export, pages.Refs, Self);
        }
        catch
        {
            pages.Dispose();
            throw;
        }
    }

    /// <summary>Closes gntalloc and gntdev.</summary>
    public void Dispose()
    {
        _gntdev.Dispose();
        _sharer.Dispose();
    }

    private sealed class Buffer(SharedPages pages, ExportedDmaBuf export, GrantRefs refs, DomainId self) : IDisplifLocalBuffer
    {
        private int _disposed;

        public int DmaBufFd => export.Fd;

        public int PageCount => refs.Length;

        public DomainId SourceDomain => self;

        public IReadOnlyList<GrantRef> SourceRefs => refs;

        public async Task<bool> CloseAndWaitReleasedAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
        {
            if (!export.IsOpen) return await export.WaitForReleaseAsync(timeout, cancellationToken).ConfigureAwait(false);
            Task<bool> wait = export.WaitForReleaseAsync(timeout, cancellationToken);   // displif note 5, docs/design.md: the fd is open when the wait starts
            export.Close();
            return await wait.ConfigureAwait(false);
        }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            export.Close();
            // gntalloc ends its grants once gntdev's export has unmapped them (deferred otherwise).
            pages.Dispose();
        }
    }
}
