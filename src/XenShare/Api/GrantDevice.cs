using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Api;

/// <summary>
/// An open <c>/dev/xen/gntdev</c>: map foreign grants, copy through grants, and the dma-buf operations
/// (export grants as a dma-buf, wait for its release, import a dma-buf as grants). The libxengnttab of
/// XenShare, over any <see cref="IGuestProcess"/>.
/// </summary>
/// <remarks>Thread-safe: each call is independent ioctls on one fd; the grant-copy scratch segment array
/// is guarded by a lock.</remarks>
public sealed class GrantDevice : IDisposable
{
    /// <summary>The device path.</summary>
    public const string Path = "/dev/xen/gntdev";

    private const int SegmentSize = 24;
    private readonly object _copyLock = new();
    private readonly GuestFdHandle _handle;
    private ProcessBuffer? _segments;

    private GrantDevice(IGuestProcess process, int fd)
    {
        Process = process;
        _handle = new GuestFdHandle(process, fd, nameof(GrantDevice));
    }

    /// <summary>Opens gntdev in <paramref name="process"/>.</summary>
    public static GrantDevice Open(IGuestProcess process)
    {
        ArgumentNullException.ThrowIfNull(process);
        int fd = ErrnoMapper.Check(process.Open(Path, Posix.O_RDWR | Posix.O_CLOEXEC), "open " + Path);
        return new GrantDevice(process, fd);
    }

    /// <summary>The process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The gntdev fd.</summary>
    /// <exception cref="ObjectDisposedException">The device was disposed.</exception>
    public int Fd => _handle.Fd;

    /// <summary>The handle that owns the gntdev fd (closed by <see cref="Dispose"/> or, when the device is
    /// forgotten, by the finalizer; mappings made through the device keep it open until they are unmapped).</summary>
    public GuestFdHandle Handle => _handle;

    /// <summary>MAP_GRANT_REF + mmap: maps grants of <paramref name="domain"/> into this process.</summary>
    public GrantMapping Map(DomainId domain, ReadOnlySpan<GrantRef> refs, bool writable = true)
    {
        if (refs.IsEmpty) throw ErrnoMapper.ToException(-Errno.EINVAL, "IOCTL_GNTDEV_MAP_GRANT_REF");
        // The reference the mapping's handle will hold (until it has unmapped and released the map) is taken
        // first, so a concurrent dispose cannot close the fd between the map and the mmap.
        ObjectDisposedException.ThrowIf(!_handle.TryAddRef(), this);
        bool owned = false;
        try
        {
            int fd = _handle.Number;
            int refsAt = GntDevIoctl.MapGrantRefRefsOffset;
            ulong index;
            var header = new ioctl_gntdev_map_grant_ref { count = (uint)refs.Length };
            using (var arg = IoctlArg.WithArray<ioctl_gntdev_map_grant_ref, ioctl_gntdev_grant_ref>(header, refsAt, refs.Length, stackalloc byte[256]))
            {
                var list = arg.Array<ioctl_gntdev_grant_ref>(refsAt, refs.Length);
                for (int i = 0; i < refs.Length; i++) list[i] = new ioctl_gntdev_grant_ref { domid = domain.Value, @ref = refs[i].Value };
                ErrnoMapper.Check(Process.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg.Bytes), "IOCTL_GNTDEV_MAP_GRANT_REF");
                index = arg.Header<ioctl_gntdev_map_grant_ref>().index;
            }
            int prot = Posix.PROT_READ | (writable ? Posix.PROT_WRITE : 0);
            int length = refs.Length * XenPage.Size;
            long addr = Process.Mmap(fd, (long)index, length, prot, Posix.MAP_SHARED);
            if (addr < 0)
            {
                UnmapGrantRef(fd, index, refs.Length);
                throw ErrnoMapper.ToException(addr, "mmap(gntdev)");
            }
            var mapping = new GuestMappingHandle(Process, addr, length, nameof(GrantMapping), _handle, AfterUnmap.GntDevUnmapGrantRef, index, refs.Length);
            owned = true;
            return new GrantMapping(this, mapping, index, refs.Length, writable);
        }
        finally
        {
            if (!owned) _handle.DangerousRelease();
        }
    }

    private void UnmapGrantRef(int fd, ulong index, int count)
    {
        var op = new ioctl_gntdev_unmap_grant_ref { index = index, count = (uint)count };
        Process.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, IoctlArg.Of(ref op));
    }

    /// <summary>IOCTL_GNTDEV_SET_MAX_GRANTS. Linux does not implement it; as libxengnttab does, ENOTTY
    /// counts as success (LG03).</summary>
    public void SetMaxGrants(uint count)
    {
        var op = new ioctl_gntdev_set_max_grants { count = count };
        int rc = _handle.Ioctl(GntDevIoctl.IOCTL_GNTDEV_SET_MAX_GRANTS, IoctlArg.Of(ref op));
        if (rc == -Errno.ENOTTY) return;
        ErrnoMapper.Check(rc, "IOCTL_GNTDEV_SET_MAX_GRANTS");
    }

    /// <summary>IOCTL_GNTDEV_GRANT_COPY: runs the segments and writes each one's GNTST status into
    /// <paramref name="statuses"/>. Throws only when the ioctl itself fails (EINVAL, EFAULT).</summary>
    public void Copy(ReadOnlySpan<GrantCopySegment> segments, Span<short> statuses)
    {
        if (statuses.Length < segments.Length) throw new ArgumentException("one status per segment", nameof(statuses));
        if (segments.IsEmpty) return;
        lock (_copyLock)
        {
            int bytes = segments.Length * SegmentSize;
            if (_segments is null || _segments.Length < bytes)
            {
                _segments?.Dispose();
                _segments = ProcessBuffer.Allocate(Process, Math.Max(bytes, 4096));   // a floor for the scratch buffer, not a Xen page count
            }
            var segs = MemoryMarshal.Cast<byte, gntdev_grant_copy_segment>(_segments.Memory.Span[..bytes]);
            for (int i = 0; i < segments.Length; i++)
            {
                var s = segments[i];
                ref var d = ref segs[i];
                d = default;
                d.len = s.Length;
                if (s.Source.IsForeign)
                {
                    d.flags |= GntCopy.source_gref;
                    d.source.foreign = new gntdev_grant_copy_foreign { @ref = s.Source.Ref.Value, offset = s.Source.Offset, domid = s.Source.Domain.Value };
                }
                else d.source.virt = (ulong)s.Source.Address;
                if (s.Dest.IsForeign)
                {
                    d.flags |= GntCopy.dest_gref;
                    d.dest.foreign = new gntdev_grant_copy_foreign { @ref = s.Dest.Ref.Value, offset = s.Dest.Offset, domid = s.Dest.Domain.Value };
                }
                else d.dest.virt = (ulong)s.Dest.Address;
            }
            var op = new ioctl_gntdev_grant_copy { count = (uint)segments.Length, segments = (ulong)_segments.Address };
            ErrnoMapper.Check(_handle.Ioctl(GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY, IoctlArg.Of(ref op)), "IOCTL_GNTDEV_GRANT_COPY");
            for (int i = 0; i < segments.Length; i++) statuses[i] = segs[i].status;
        }
    }

    /// <summary>IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS: maps the grants and hands them out as a new dma-buf.
    /// A count of 0 fails with EINVAL without calling the kernel (LG01).</summary>
    public ExportedDmaBuf ExportDmaBuf(DomainId domain, ReadOnlySpan<GrantRef> refs, DmaBufBacking backing = DmaBufBacking.None)
    {
        if (refs.IsEmpty) throw ErrnoMapper.ToException(-Errno.EINVAL, "IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS");
        int refsAt = GntDevIoctl.DmaBufRefsOffset;
        var header = new ioctl_gntdev_dmabuf_exp_from_refs { flags = (uint)backing, count = (uint)refs.Length, domid = domain.Value };
        using var arg = IoctlArg.WithArray<ioctl_gntdev_dmabuf_exp_from_refs, uint>(header, refsAt, refs.Length, stackalloc byte[256]);
        MemoryMarshal.Cast<GrantRef, uint>(refs).CopyTo(arg.Array<uint>(refsAt, refs.Length));
        ErrnoMapper.Check(_handle.Ioctl(GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, arg.Bytes), "IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS");
        return new ExportedDmaBuf(this, (int)arg.Header<ioctl_gntdev_dmabuf_exp_from_refs>().fd, refs.Length * (long)XenPage.Size);
    }

    /// <summary>IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, raw: 0, or -ETIMEDOUT / -ENOENT.</summary>
    /// <exception cref="ObjectDisposedException">The device was disposed.</exception>
    public int WaitReleasedRaw(int fdKey, uint waitMs)
    {
        var op = new ioctl_gntdev_dmabuf_exp_wait_released { fd = (uint)fdKey, wait_to_ms = waitMs };
        return _handle.Ioctl(GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, IoctlArg.Of(ref op));
    }

    /// <summary>IOCTL_GNTDEV_DMABUF_IMP_TO_REFS: grants the pages of the dma-buf at
    /// <paramref name="dmaBufFd"/> to <paramref name="domain"/>. A count of 0 fails with EINVAL without
    /// calling the kernel (LG01).</summary>
    public ImportedDmaBuf ImportDmaBuf(int dmaBufFd, int pageCount, DomainId domain)
    {
        if (pageCount <= 0) throw ErrnoMapper.ToException(-Errno.EINVAL, "IOCTL_GNTDEV_DMABUF_IMP_TO_REFS");
        int refsAt = GntDevIoctl.DmaBufRefsOffset;
        var header = new ioctl_gntdev_dmabuf_imp_to_refs { fd = (uint)dmaBufFd, count = (uint)pageCount, domid = domain.Value };
        using var arg = IoctlArg.WithArray<ioctl_gntdev_dmabuf_imp_to_refs, uint>(header, refsAt, pageCount, stackalloc byte[256]);
        ErrnoMapper.Check(_handle.Ioctl(GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, arg.Bytes), "IOCTL_GNTDEV_DMABUF_IMP_TO_REFS");
        var refs = new GrantRef[pageCount];
        MemoryMarshal.Cast<uint, GrantRef>(arg.Array<uint>(refsAt, pageCount)).CopyTo(refs);
        return new ImportedDmaBuf(this, dmaBufFd, refs);
    }

    /// <summary>IOCTL_GNTDEV_DMABUF_IMP_RELEASE; null when the device is already closed (closing gntdev
    /// released every import).</summary>
    internal int? ImportRelease(int fdKey)
    {
        var op = new ioctl_gntdev_dmabuf_imp_release { fd = (uint)fdKey };
        return _handle.IoctlIfOpen(GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE, IoctlArg.Of(ref op));
    }

    /// <summary>Closes gntdev. Exported dma-bufs stay alive; mappings still mapped keep the fd open until they
    /// are unmapped (as their VMAs keep the file open in Linux), and imports are released when it closes.</summary>
    public void Dispose()
    {
        lock (_copyLock)
        {
            _segments?.Dispose();
            _segments = null;
        }
        _handle.Dispose();
    }
}
