using XenShare.Api;

namespace XenShare.Displif;

/// <summary>A display buffer of a <see cref="DisplifFrontend"/> (DBUF_CREATE): its pages, mapped in the
/// frontend's process, and its cookie.</summary>
public sealed class DisplifBuffer
{
    private readonly SharedPages? _pages;
    private readonly GrantMapping? _backendPages;

    internal DisplifBuffer(ulong cookie, int width, int height, int bpp, int pitch, int size, SharedPages directory,
        SharedPages? pages, GrantMapping? backendPages, GrantRef[] refs)
    {
        Cookie = cookie;
        Width = width;
        Height = height;
        Bpp = bpp;
        Pitch = pitch;
        Size = size;
        Directory = directory;
        _pages = pages;
        _backendPages = backendPages;
        Refs = refs;
    }

    /// <summary>The buffer's cookie (dbuf_cookie).</summary>
    public ulong Cookie { get; }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>Bits per pixel.</summary>
    public int Bpp { get; }

    /// <summary>Bytes per row: <c>ceil(width * bpp / 8)</c>, as Linux's dumb buffers.</summary>
    public int Pitch { get; }

    /// <summary>The buffer_sz sent: <see cref="Pitch"/> times <see cref="Height"/>.</summary>
    public int Size { get; }

    /// <summary>The buffer's pages.</summary>
    public int PageCount => Refs.Count;

    /// <summary>Whether the backend allocated the pages (be-alloc); the frontend then maps the backend's refs.</summary>
    public bool BackendAllocated => _backendPages is not null;

    /// <summary>The grant refs of the pages: the frontend's own, or the backend's (be-alloc).</summary>
    public IReadOnlyList<GrantRef> Refs { get; }

    /// <summary>The pixels (<see cref="Size"/> bytes), writable.</summary>
    public Span<byte> Pixels => (_pages is not null ? _pages.Memory.Span : _backendPages!.Memory.Span)[..Size];

    internal SharedPages Directory { get; }

    internal int Released;

    /// <summary>Frees the pages and the directory (after DBUF_DESTROY, or at close).</summary>
    internal void Free()
    {
        if (Interlocked.Exchange(ref Released, 1) != 0) return;
        _backendPages?.Dispose();
        _pages?.Dispose();
        Directory.Dispose();
    }

    /// <summary>Unmaps the backend's pages of a be-alloc buffer (before DBUF_DESTROY).</summary>
    internal void UnmapBackendPages() => _backendPages?.Dispose();
}
