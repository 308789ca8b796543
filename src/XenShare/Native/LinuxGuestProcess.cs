using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Native;

/// <summary>
/// The native backend of the seam: this .NET process on a Linux guest (x86-64 or arm64), issuing real
/// system calls through libc. Every call returns what the kernel returned, <c>-errno</c> on failure,
/// unchanged (D05).
/// </summary>
/// <remarks>
/// <para><b>Ownership.</b> Every fd this object opens or duplicates and every mapping it makes is recorded
/// and owned by a SafeHandle (<see cref="SafeFdHandle"/>, <see cref="SafeMappingHandle"/>).
/// <see cref="Close"/> and <see cref="Munmap"/> drop the record; <see cref="Dispose"/> closes and unmaps
/// whatever is left (mappings first, then fds); if the object is never disposed the handles' finalizers
/// do it.</para>
/// <para><b>EINTR.</b> Retried for open, read, write, lseek, dup and poll (poll with the timeout recomputed
/// against a deadline, so retries never extend the wait). Never retried for close (Linux has released
/// the fd even when close reports EINTR; a retry could close an fd another thread was just given) and
/// never for ioctl (an ioctl may have done part of its work, and the Xen wait ioctls must report what
/// they report: the caller decides).</para>
/// <para><b>Validation.</b> Only where the raw call could corrupt or crash this process, and answered
/// with the errno the kernel uses for the same class of mistake: a negative length is -EINVAL; an ioctl
/// buffer shorter than the size encoded in the request, or than the ref array a counted gntdev/gntalloc
/// argument declares, is -EFAULT (the kernel would read or write past the span into the managed heap);
/// munmap of a range not entirely made by this object is -EINVAL (it would unmap the runtime's own
/// memory); a path containing NUL is -EINVAL and a null path -EFAULT. Everything else goes to the kernel
/// unchanged: open flags (add O_CLOEXEC yourself), mmap flags and offsets, close of an fd this object does
/// not own (close(2) is still called and its result returned).</para>
/// <para><b>Threads.</b> Safe for concurrent use. One lock guards the two ownership tables and is never
/// held across a system call. Records are removed before the closing/unmapping syscall, so a number or
/// an address the kernel hands out again is never confused with the old one.</para>
/// <para>Calling a member after <see cref="Dispose"/> throws <see cref="ObjectDisposedException"/>: that is
/// a programming error, not bad input.</para>
/// </remarks>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class LinuxGuestProcess : IGuestProcess
{
    /// <summary>The mode passed with every open(2): used only with O_CREAT/O_TMPFILE, filtered by umask,
    /// as fopen(3) does.</summary>
    private const int DefaultCreateMode = 0x1b6; // 0666

    private static readonly long PageSize = Environment.SystemPageSize;
    private static readonly int ImpToRefsRefsOffset =
        (int)Marshal.OffsetOf<ioctl_gntdev_dmabuf_imp_to_refs>(nameof(ioctl_gntdev_dmabuf_imp_to_refs.refs));

    // Lock order: this lock only; it guards _fds, _mappings and _disposed and is never held across a syscall.
    private readonly Lock _lock = new();
    private readonly Dictionary<int, SafeFdHandle> _fds = [];
    private readonly Dictionary<long, SafeMappingHandle> _mappings = []; // keyed by start; never overlapping
    private volatile bool _disposed;

    /// <summary>Creates a view of this process; it owns nothing until it opens or maps something.</summary>
    public LinuxGuestProcess()
    {
        Description = "native pid " + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <inheritdoc/>
    public string Description { get; }

    /// <summary>The number of fds this object currently owns.</summary>
    internal int OwnedFdCount
    {
        get
        {
            lock (_lock)
            {
                return _fds.Count;
            }
        }
    }

    /// <summary>The number of mapping records this object currently owns (a partial munmap may split one).</summary>
    internal int OwnedMappingCount
    {
        get
        {
            lock (_lock)
            {
                return _mappings.Count;
            }
        }
    }

    /// <inheritdoc/>
    public int Open(string path, int flags)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (path is null)
        {
            return -Errno.EFAULT;
        }

        // The UTF-8 marshaller would cut the string at the NUL and open a different path.
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            return -Errno.EINVAL;
        }

        int fd;
        int errno;
        do
        {
            fd = Interop.Libc.Open(path, flags, DefaultCreateMode);
            errno = fd < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        while (errno == Errno.EINTR);

        if (fd < 0)
        {
            return -errno;
        }

        TrackFd(fd);
        return fd;
    }

    /// <inheritdoc/>
    public int Close(int fd)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        SafeFdHandle? owned;
        lock (_lock)
        {
            _fds.Remove(fd, out owned);
        }

        // Drop ownership first so that the handle never closes the number again; then close it here to
        // report the kernel's answer.
        owned?.SetHandleAsInvalid();
        int r = Interop.Libc.Close(fd);
        return r < 0 ? -Marshal.GetLastPInvokeError() : r;
    }

    /// <inheritdoc/>
    public unsafe int Ioctl(int fd, uint request, Span<byte> arg)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int error = IoctlArgumentError(request, arg);
        if (error != 0)
        {
            return -error;
        }

        fixed (byte* p = arg)
        {
            // An empty span passes NULL (fixed over an empty span yields null; made explicit here).
            int r = Interop.Libc.Ioctl(fd, request, arg.IsEmpty ? null : p);
            return r < 0 ? -Marshal.GetLastPInvokeError() : r;
        }
    }

    /// <inheritdoc/>
    public unsafe long Mmap(int fd, long offset, long length, int prot, int flags)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);

        // Zero is EINVAL for the kernel too; a negative length would become a huge size_t.
        if (length <= 0 || length > long.MaxValue - PageSize)
        {
            return -Errno.EINVAL;
        }

        void* p = Interop.Libc.Mmap(null, (nuint)length, prot, flags, fd, offset);
        if (p == Interop.Libc.MAP_FAILED)
        {
            return -Marshal.GetLastPInvokeError();
        }

        long address = (long)p;
        var mapping = new SafeMappingHandle(address, RoundUpToPage(length));
        bool disposed;
        lock (_lock)
        {
            disposed = _disposed;
            if (!disposed)
            {
                // Only MAP_FIXED can land on a recorded range; the kernel has already replaced it, so the
                // old records are dropped without unmapping.
                List<SafeMappingHandle>? replaced = null;
                CutLocked(mapping.Address, mapping.End, ref replaced);
                if (replaced is not null)
                {
                    foreach (SafeMappingHandle old in replaced)
                    {
                        old.SetHandleAsInvalid();
                    }
                }

                _mappings.Add(address, mapping);
            }
        }

        if (disposed)
        {
            mapping.Dispose();
            ObjectDisposedException.ThrowIf(true, this);
        }

        return address;
    }

    /// <inheritdoc/>
    public unsafe int Munmap(long address, long length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);

        // The kernel's own EINVAL cases, checked first so that the answer matches it.
        if (length <= 0 || address < 0 || (address & (PageSize - 1)) != 0 || length > long.MaxValue - PageSize)
        {
            return -Errno.EINVAL;
        }

        long start = address;
        long rounded = RoundUpToPage(length);
        if (start > long.MaxValue - rounded)
        {
            return -Errno.EINVAL;
        }

        long end = start + rounded;
        List<SafeMappingHandle>? cut = null;
        lock (_lock)
        {
            // Unmapping memory this object did not map could unmap the runtime's own heap or code.
            if (!IsCoveredLocked(start, end))
            {
                return -Errno.EINVAL;
            }

            // Remove the records before the syscall: a concurrent Munmap of the same range now fails the
            // coverage check instead of unmapping whatever mmap hands out at that address next.
            CutLocked(start, end, ref cut);
        }

        int r = Interop.Libc.Munmap((void*)start, (nuint)rounded);
        if (r == 0)
        {
            if (cut is not null)
            {
                foreach (SafeMappingHandle old in cut)
                {
                    old.SetHandleAsInvalid();
                }
            }

            return 0;
        }

        int errno = Marshal.GetLastPInvokeError();

        // Nothing was unmapped (e.g. ENOMEM: too many mappings to split): put the records back.
        if (cut is not null)
        {
            bool disposed;
            lock (_lock)
            {
                disposed = _disposed;
                if (!disposed)
                {
                    foreach (SafeMappingHandle old in cut)
                    {
                        if (_mappings.Remove(old.Address, out SafeMappingHandle? left))
                        {
                            left.SetHandleAsInvalid();
                        }

                        if (old.End > end && _mappings.Remove(end, out SafeMappingHandle? right))
                        {
                            right.SetHandleAsInvalid();
                        }

                        _mappings[old.Address] = old;
                    }
                }
            }

            if (disposed)
            {
                foreach (SafeMappingHandle old in cut)
                {
                    old.Dispose();
                }
            }
        }

        return -errno;
    }

    /// <inheritdoc/>
    public long Lseek(int fd, long offset, int whence)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long r;
        int errno;
        do
        {
            r = Interop.Libc.Lseek(fd, offset, whence);
            errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        while (errno == Errno.EINTR);

        return r < 0 ? -errno : r;
    }

    /// <inheritdoc/>
    public int Dup(int fd)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        int r;
        int errno;
        do
        {
            r = Interop.Libc.Dup(fd);
            errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
        while (errno == Errno.EINTR);

        if (r < 0)
        {
            return -errno;
        }

        TrackFd(r);
        return r;
    }

    /// <inheritdoc/>
    public unsafe long Read(int fd, Span<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        fixed (byte* p = buffer)
        {
            nint r;
            int errno;
            do
            {
                r = Interop.Libc.Read(fd, p, (nuint)buffer.Length);
                errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
            }
            while (errno == Errno.EINTR);

            return r < 0 ? -errno : r;
        }
    }

    /// <inheritdoc/>
    public unsafe long Write(int fd, ReadOnlySpan<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        fixed (byte* p = buffer)
        {
            nint r;
            int errno;
            do
            {
                r = Interop.Libc.Write(fd, p, (nuint)buffer.Length);
                errno = r < 0 ? Marshal.GetLastPInvokeError() : 0;
            }
            while (errno == Errno.EINTR);

            return r < 0 ? -errno : r;
        }
    }

    /// <inheritdoc/>
    public unsafe int Poll(Span<PollFd> fds, int timeoutMs)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        long deadline = timeoutMs > 0 ? Environment.TickCount64 + timeoutMs : 0;
        int timeout = timeoutMs;
        fixed (PollFd* p = fds)
        {
            while (true)
            {
                int r = Interop.Libc.Poll(p, (nuint)fds.Length, timeout);
                if (r >= 0)
                {
                    return r;
                }

                int errno = Marshal.GetLastPInvokeError();
                if (errno != Errno.EINTR)
                {
                    return -errno;
                }

                // A negative timeout waits forever and 0 never waits: both stay as they are.
                if (timeoutMs > 0)
                {
                    timeout = (int)Math.Max(0, deadline - Environment.TickCount64);
                }
            }
        }
    }

    /// <summary>Unmaps every mapping and closes every fd this object still owns. Idempotent.</summary>
    public void Dispose()
    {
        SafeMappingHandle[] mappings;
        SafeFdHandle[] fds;
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            mappings = [.. _mappings.Values];
            fds = [.. _fds.Values];
            _mappings.Clear();
            _fds.Clear();
        }

        // Mappings first: a gntdev/gntalloc mapping outlives its fd anyway, but unmapping first releases
        // the grants in the order a C program's cleanup would.
        foreach (SafeMappingHandle mapping in mappings)
        {
            mapping.Dispose();
        }

        foreach (SafeFdHandle fd in fds)
        {
            fd.Dispose();
        }
    }

    private static long RoundUpToPage(long length) => (length + PageSize - 1) & ~(PageSize - 1);

    /// <summary>0 if <paramref name="arg"/> is safe to hand to the kernel for <paramref name="request"/>,
    /// else the errno to report.</summary>
    private static int IoctlArgumentError(uint request, ReadOnlySpan<byte> arg)
    {
        if (arg.IsEmpty)
        {
            return 0; // NULL: the kernel answers EFAULT (or ignores it) without touching our memory.
        }

        long need = Ioc.SizeOf(request);

        // The counted ioctls read (and IMP_TO_REFS / ALLOC_GREF write) an array past the fixed header.
        if (request == GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF)
        {
            need = Math.Max(need, CountedSize(arg, countOffset: 0, GntDevIoctl.MapGrantRefRefsOffset, Unsafe.SizeOf<ioctl_gntdev_grant_ref>()));
        }
        else if (request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS)
        {
            need = Math.Max(need, CountedSize(arg, countOffset: 4, GntDevIoctl.DmaBufRefsOffset, sizeof(uint)));
        }
        else if (request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS)
        {
            need = Math.Max(need, CountedSize(arg, countOffset: 4, ImpToRefsRefsOffset, sizeof(uint)));
        }
        else if (request == GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF)
        {
            need = Math.Max(need, CountedSize(arg, countOffset: 4, GntAllocIoctl.GrefIdsOffset, sizeof(uint)));
        }

        return arg.Length < need ? Errno.EFAULT : 0;
    }

    /// <summary>Bytes a counted argument spans: the array offset plus count elements (the header's
    /// own size if the count itself is not inside the buffer).</summary>
    private static long CountedSize(ReadOnlySpan<byte> arg, int countOffset, int arrayOffset, int elementSize)
    {
        if (arg.Length < countOffset + sizeof(uint))
        {
            return arrayOffset;
        }

        uint count = MemoryMarshal.Read<uint>(arg[countOffset..]);
        return arrayOffset + ((long)count * elementSize);
    }

    private void TrackFd(int fd)
    {
        var handle = new SafeFdHandle(fd);
        bool disposed;
        lock (_lock)
        {
            disposed = _disposed;
            if (!disposed)
            {
                // A record for the same number means the old fd was closed behind our back (by another
                // component); the kernel has reused the number, so the old record must not close it.
                if (_fds.Remove(fd, out SafeFdHandle? stale))
                {
                    stale.SetHandleAsInvalid();
                }

                _fds.Add(fd, handle);
            }
        }

        if (disposed)
        {
            handle.Dispose();
            ObjectDisposedException.ThrowIf(true, this);
        }
    }

    /// <summary>True if every byte of [start, end) lies inside a recorded mapping.</summary>
    private bool IsCoveredLocked(long start, long end)
    {
        if (_mappings.TryGetValue(start, out SafeMappingHandle? exact) && exact.End >= end)
        {
            return true;
        }

        long covered = 0;
        foreach (SafeMappingHandle m in _mappings.Values)
        {
            long lo = Math.Max(start, m.Address);
            long hi = Math.Min(end, m.End);
            if (lo < hi)
            {
                covered += hi - lo;
            }
        }

        return covered == end - start;
    }

    /// <summary>Removes [start, end) from the records: every overlapping record is taken out (and
    /// appended to <paramref name="removed"/>, still valid) and the parts of it outside the range are
    /// recorded again as new handles.</summary>
    private void CutLocked(long start, long end, ref List<SafeMappingHandle>? removed)
    {
        if (_mappings.TryGetValue(start, out SafeMappingHandle? exact) && exact.End == end)
        {
            _mappings.Remove(start);
            (removed ??= []).Add(exact);
            return;
        }

        List<SafeMappingHandle>? overlapping = null;
        foreach (SafeMappingHandle m in _mappings.Values)
        {
            if (m.Address < end && start < m.End)
            {
                (overlapping ??= []).Add(m);
            }
        }

        if (overlapping is null)
        {
            return;
        }

        foreach (SafeMappingHandle m in overlapping)
        {
            _mappings.Remove(m.Address);
            (removed ??= []).Add(m);
            if (m.Address < start)
            {
                _mappings.Add(m.Address, new SafeMappingHandle(m.Address, start - m.Address));
            }

            if (m.End > end)
            {
                _mappings.Add(end, new SafeMappingHandle(end, m.End - end));
            }
        }
    }
}
