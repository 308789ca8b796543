using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Api;

/// <summary>An open <c>/dev/xen/gntalloc</c>: shares local pages with a foreign domain (libxengnttab's
/// gntshr).</summary>
public sealed class GrantSharer : IDisposable
{
    /// <summary>The device path.</summary>
    public const string Path = "/dev/xen/gntalloc";

    private readonly GuestFdHandle _handle;

    private GrantSharer(IGuestProcess process, int fd)
    {
        Process = process;
        _handle = new GuestFdHandle(process, fd, nameof(GrantSharer));
    }

    /// <summary>Opens gntalloc in <paramref name="process"/>.</summary>
    public static GrantSharer Open(IGuestProcess process)
    {
        ArgumentNullException.ThrowIfNull(process);
        return new GrantSharer(process, ErrnoMapper.Check(process.Open(Path, Posix.O_RDWR | Posix.O_CLOEXEC), "open " + Path));
    }

    /// <summary>The process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The gntalloc fd.</summary>
    /// <exception cref="ObjectDisposedException">The sharer was disposed.</exception>
    public int Fd => _handle.Fd;

    /// <summary>The handle that owns the gntalloc fd (shared pages still mapped keep it open until they are
    /// unmapped).</summary>
    public GuestFdHandle Handle => _handle;

    /// <summary>ALLOC_GREF + mmap: <paramref name="pageCount"/> zeroed pages granted to
    /// <paramref name="domain"/>, read-only for the peer unless <paramref name="writable"/>. With
    /// <paramref name="deallocateAfterMap"/> the grefs are deallocated right after mmap, so the pages live
    /// exactly as long as the mapping (libxengnttab's share_pages, LG04).</summary>
    public SharedPages Share(DomainId domain, int pageCount, bool writable = true, bool deallocateAfterMap = false)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pageCount);
        // The reference the pages' mapping handle will hold (until it has unmapped and deallocated) is taken
        // first, so a concurrent dispose cannot close the fd between the allocation and the mmap.
        ObjectDisposedException.ThrowIf(!_handle.TryAddRef(), this);
        bool owned = false;
        try
        {
            int fd = _handle.Number;
            int idsAt = GntAllocIoctl.GrefIdsOffset;
            ulong index;
            var refs = new GrantRef[pageCount];
            var header = new ioctl_gntalloc_alloc_gref { domid = domain.Value, flags = writable ? GntAllocIoctl.GNTALLOC_FLAG_WRITABLE : (ushort)0, count = (uint)pageCount };
            using (var arg = IoctlArg.WithArray<ioctl_gntalloc_alloc_gref, uint>(header, idsAt, pageCount, stackalloc byte[256]))
            {
                ErrnoMapper.Check(Process.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg.Bytes), "IOCTL_GNTALLOC_ALLOC_GREF");
                index = arg.Header<ioctl_gntalloc_alloc_gref>().index;
                MemoryMarshal.Cast<uint, GrantRef>(arg.Array<uint>(idsAt, pageCount)).CopyTo(refs);
            }
            int length = pageCount * XenPage.Size;
            long addr = Process.Mmap(fd, (long)index, length, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
            if (addr < 0)
            {
                Dealloc(fd, index, pageCount);
                throw ErrnoMapper.ToException(addr, "mmap(gntalloc)");
            }
            if (deallocateAfterMap) Dealloc(fd, index, pageCount);
            var mapping = new GuestMappingHandle(Process, addr, length, nameof(SharedPages), _handle,
                deallocateAfterMap ? AfterUnmap.None : AfterUnmap.GntAllocDealloc, index, pageCount);
            owned = true;
            return new SharedPages(this, mapping, index, refs, writable);
        }
        finally
        {
            if (!owned) _handle.DangerousRelease();
        }
    }

    private void Dealloc(int fd, ulong index, int count)
    {
        var op = new ioctl_gntalloc_dealloc_gref { index = index, count = (uint)count };
        Process.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, IoctlArg.Of(ref op));
    }

    /// <summary>Closes gntalloc (pages still mapped keep the fd open until they are unmapped).</summary>
    public void Dispose() => _handle.Dispose();
}
