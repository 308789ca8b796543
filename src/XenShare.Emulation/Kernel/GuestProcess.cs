using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Interop;

namespace XenShare.Emulation.Kernel;

/// <summary>
/// A process inside an emulated domain, implementing the seam: an fd table (with a limit, reserve-then-
/// install), a list of mappings whose addresses are real (guest frames mapped from machine memory into
/// this .NET process), and the system calls of <see cref="IGuestProcess"/> returning &gt;= 0 or -errno.
/// </summary>
/// <remarks>
/// Locks: <c>_fdLock</c> guards the fd table; <c>_mmLock</c> guards the mapping list. Neither is held
/// while calling into a driver (fget/fput discipline), so drivers may call back into the process
/// (reserve/install an fd, copy from user memory). Deviation: munmap must cover whole mappings; a
/// partial munmap of a mapping returns EINVAL instead of splitting it (docs/design.md).
/// </remarks>
public sealed unsafe class GuestProcess : IAsyncGuestProcess
{
    private static readonly KernelFile Reserved = new ReservedMarker();

    private readonly object _fdLock = new();
    private readonly object _mmLock = new();
    private readonly KernelFile?[] _fds;
    private readonly bool[] _cloexec;
    private readonly List<Vma> _vmas = new();
    private bool _exited;
    private int _inFlight;
    private int _lowestFree;   // no fd below this is free (Linux's next_fd hint)
    private int _idleWaiters;

    internal GuestProcess(GuestKernel kernel, int pid)
    {
        Kernel = kernel;
        Pid = pid;
        _fds = new KernelFile?[kernel.Options.MaxFdsPerProcess];
        _cloexec = new bool[_fds.Length];
    }

    /// <summary>The kernel this process runs on.</summary>
    public GuestKernel Kernel { get; }

    /// <summary>Process id (per kernel).</summary>
    public int Pid { get; }

    /// <inheritdoc/>
    public string Description => $"emulated dom{Kernel.Domain.Id} pid {Pid}";

    /// <summary>Open fds (leak checks).</summary>
    public int OpenFdCount
    {
        get
        {
            lock (_fdLock)
            {
                int n = 0;
                foreach (var f in _fds) if (f is not null && f != Reserved) n++;
                return n;
            }
        }
    }

    /// <summary>Live mappings (leak checks).</summary>
    public int MappingCount { get { lock (_mmLock) return _vmas.Count; } }

    /// <summary>Whether an fd has close-on-exec set; null if the fd is not open.</summary>
    public bool? IsCloseOnExec(int fd)
    {
        lock (_fdLock)
            return fd >= 0 && fd < _fds.Length && _fds[fd] is { } f && f != Reserved ? _cloexec[fd] : null;
    }

    // ------------------------------------------------------------------ fd table

    /// <summary>get_unused_fd_flags: reserves the lowest free fd, or -EMFILE.</summary>
    internal int ReserveFd(bool cloexec)
    {
        lock (_fdLock)
        {
            if (_exited) return -Errno.EBADF;
            if (Kernel.Host.Faults.ShouldFail(FaultPoint.Fd)) return -Errno.EMFILE;
            for (int fd = _lowestFree; fd < _fds.Length; fd++)
            {
                if (_fds[fd] is not null) continue;
                _fds[fd] = Reserved;
                _cloexec[fd] = cloexec;
                _lowestFree = fd + 1;
                return fd;
            }
            _lowestFree = _fds.Length;
            return -Errno.EMFILE;
        }
    }

    /// <summary>fd_install: publishes a file at a reserved fd (the file's reference moves to the table).</summary>
    internal void InstallFd(int fd, KernelFile file)
    {
        lock (_fdLock)
        {
            if (_fds[fd] != Reserved) throw new InvalidOperationException($"fd {fd} was not reserved");
            file.GetUser();
            _fds[fd] = file;
        }
    }

    /// <summary>put_unused_fd: gives back a reserved fd that will not be installed.</summary>
    internal void UnreserveFd(int fd)
    {
        lock (_fdLock)
        {
            if (_fds[fd] == Reserved) { _fds[fd] = null; _lowestFree = Math.Min(_lowestFree, fd); }
        }
    }

    /// <summary>fget: the file at an fd with a reference taken, or null.</summary>
    internal KernelFile? GetFile(int fd)
    {
        lock (_fdLock)
        {
            if (fd < 0 || fd >= _fds.Length) return null;
            var f = _fds[fd];
            if (f is null || f == Reserved) return null;
            f.Get();
            return f;
        }
    }

    /// <summary>Enters a system call: counted for <see cref="WaitIdle"/>; false (the call fails with EIO) once
    /// the kernel is halted. The count goes up before the halt flag is read and <see cref="GuestKernel.Halt"/>
    /// sets the flag before it waits for the count, so a call either sees the halt or is waited for.</summary>
    private bool EnterSyscall()
    {
        Interlocked.Increment(ref _inFlight);
        if (!Kernel.IsHalted) return true;
        LeaveSyscall();
        return false;
    }

    /// <inheritdoc/>
    public int Open(string path, int flags)
    {
        if (path is null) return -Errno.EFAULT;
        if (!EnterSyscall()) return -Errno.EIO;
        try
        {
            int rc = Kernel.OpenDevice(path, this, flags, out var file);
            if (rc < 0) return rc;
            int fd = ReserveFd((flags & Posix.O_CLOEXEC) != 0);
            if (fd < 0) { file!.Put(); return fd; }
            InstallFd(fd, file!);
            return fd;
        }
        finally { LeaveSyscall(); }
    }

    /// <inheritdoc/>
    public int Close(int fd)
    {
        if (!EnterSyscall()) return -Errno.EIO;
        try { return CloseEntered(fd); }
        finally { LeaveSyscall(); }
    }

    private int CloseEntered(int fd)
    {
        KernelFile? f;
        lock (_fdLock)
        {
            if (fd < 0 || fd >= _fds.Length) return -Errno.EBADF;
            f = _fds[fd];
            if (f is null || f == Reserved) return -Errno.EBADF;
            _fds[fd] = null;
            _lowestFree = Math.Min(_lowestFree, fd);
        }
        f.PutUser();
        f.Put();
        return 0;
    }

    /// <inheritdoc/>
    public int Dup(int fd)
    {
        if (!EnterSyscall()) return -Errno.EIO;
        try
        {
            var f = GetFile(fd);
            if (f is null) return -Errno.EBADF;
            int nfd = ReserveFd(cloexec: false);
            if (nfd < 0) { f.Put(); return nfd; }
            InstallFd(nfd, f);
            return nfd;
        }
        finally { LeaveSyscall(); }
    }

    /// <inheritdoc/>
    public int Ioctl(int fd, uint request, Span<byte> arg)
    {
        if (!EnterSyscall()) return -Errno.EIO;
        var f = GetFile(fd);
        if (f is null) { LeaveSyscall(); return -Errno.EBADF; }
        try { return f.Ioctl(this, request, arg); }
        finally
        {
            f.Put();
            LeaveSyscall();
        }
    }

    /// <inheritdoc/>
    public Task<int>? IoctlAsync(int fd, uint request, ReadOnlyMemory<byte> arg, CancellationToken cancellationToken)
    {
        if (!EnterSyscall()) return Task.FromResult(-Errno.EIO);
        var f = GetFile(fd);
        if (f is null) { LeaveSyscall(); return Task.FromResult(-Errno.EBADF); }
        Task<int>? inner;
        try { inner = f.IoctlAsync(this, request, arg, cancellationToken); }
        catch
        {
            f.Put();
            LeaveSyscall();
            throw;
        }
        if (inner is null) { f.Put(); LeaveSyscall(); return null; }
        return AsyncSyscall.Complete(inner, () =>
        {
            f.Put();
            LeaveSyscall();
        });
    }

    private void LeaveSyscall()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && Volatile.Read(ref _idleWaiters) != 0)
            lock (_fdLock) Monitor.PulseAll(_fdLock);
    }

    /// <summary>Waits until no ioctl or read of this process is in progress (a blocked wait thread of an
    /// async API, or a client's reader thread, holds file references until it returns). False on timeout.</summary>
    public bool WaitIdle(TimeSpan timeout)
    {
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        Interlocked.Increment(ref _idleWaiters);
        try
        {
            lock (_fdLock)
            {
                while (Volatile.Read(ref _inFlight) != 0)
                {
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0) return false;
                    Monitor.Wait(_fdLock, (int)Math.Min(left, 1000));
                }
                return true;
            }
        }
        finally { Interlocked.Decrement(ref _idleWaiters); }
    }

    /// <inheritdoc/>
    public long Lseek(int fd, long offset, int whence)
    {
        if (!EnterSyscall()) return -Errno.EIO;
        var f = GetFile(fd);
        if (f is null) { LeaveSyscall(); return -Errno.EBADF; }
        try { return f.Lseek(offset, whence); }
        finally { f.Put(); LeaveSyscall(); }
    }

    /// <inheritdoc/>
    public long Read(int fd, Span<byte> buffer)
    {
        // A read may block (evtchn, xenbus): it is a syscall in progress for WaitIdle, like an ioctl.
        if (!EnterSyscall()) return -Errno.EIO;
        var f = GetFile(fd);
        if (f is null) { LeaveSyscall(); return -Errno.EBADF; }
        try { return f.Read(this, buffer); }
        finally
        {
            f.Put();
            LeaveSyscall();
        }
    }

    /// <inheritdoc/>
    public long Write(int fd, ReadOnlySpan<byte> buffer)
    {
        if (!EnterSyscall()) return -Errno.EIO;
        var f = GetFile(fd);
        if (f is null) { LeaveSyscall(); return -Errno.EBADF; }
        try { return f.Write(this, buffer); }
        finally { f.Put(); LeaveSyscall(); }
    }

    /// <inheritdoc/>
    public int Poll(Span<PollFd> fds, int timeoutMs)
    {
        if (!EnterSyscall()) return -Errno.EIO;
        try { return PollEntered(fds, timeoutMs); }
        finally { LeaveSyscall(); }
    }

    private int PollEntered(Span<PollFd> fds, int timeoutMs)
    {
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        while (true)
        {
            long gen = Kernel.PollQueue.Generation;
            int ready = 0;
            for (int i = 0; i < fds.Length; i++)
            {
                fds[i].REvents = 0;
                if (fds[i].Fd < 0) continue;
                var f = GetFile(fds[i].Fd);
                if (f is null) { fds[i].REvents = Posix.POLLNVAL; ready++; continue; }
                try
                {
                    short ev = f.Poll();
                    short got = (short)(ev & (fds[i].Events | Posix.POLLERR | Posix.POLLHUP));
                    fds[i].REvents = got;
                    if (got != 0) ready++;
                }
                finally { f.Put(); }
            }
            if (ready > 0 || timeoutMs == 0) return ready;
            if (Kernel.IsHalted) return -Errno.EIO;
            long left = deadline == long.MaxValue ? -1 : deadline - Environment.TickCount64;
            if (deadline != long.MaxValue && left <= 0) return 0;
            Kernel.PollQueue.WaitChanged(gen, (int)Math.Min(left, int.MaxValue));
        }
    }

    // ------------------------------------------------------------------ memory

    /// <inheritdoc/>
    public long Mmap(int fd, long offset, long length, int prot, int flags)
    {
        if (!EnterSyscall()) return -Errno.EIO;
        try { return MmapEntered(fd, offset, length, prot, flags); }
        finally { LeaveSyscall(); }
    }

    private long MmapEntered(int fd, long offset, long length, int prot, int flags)
    {
        if (length <= 0 || length > int.MaxValue * (long)XenPage.Size || !XenPage.IsAligned(offset) || offset < 0) return -Errno.EINVAL;
        int share = flags & (Posix.MAP_SHARED | Posix.MAP_PRIVATE);
        if (share == 0 || share == (Posix.MAP_SHARED | Posix.MAP_PRIVATE)) return -Errno.EINVAL;
        if ((flags & Posix.MAP_FIXED) != 0) return -Errno.EINVAL; // a fixed address is not supported by the seam
        long len = XenPage.RoundUp(length);
        var vma = new Vma { Length = len, Prot = prot & (Posix.PROT_READ | Posix.PROT_WRITE), Flags = flags, Offset = offset };
        KernelFile? file = null;
        if ((flags & Posix.MAP_ANONYMOUS) != 0)
        {
            var pages = new GuestFrame[vma.PageCount];
            if (!Kernel.TryAllocPages(pages, zero: true)) return -Errno.ENOMEM;
            vma.Pages = pages;
            vma.Owner = new AnonymousOwner(Kernel);
        }
        else
        {
            file = GetFile(fd);
            if (file is null) return -Errno.EBADF;
            int rc = file.Mmap(this, vma);
            if (rc < 0) { file.Put(); return rc; }
            vma.File = file; // the mapping keeps the file reference taken by GetFile
        }
        long addr = MapReal(vma);
        if (addr < 0)
        {
            vma.Owner?.Close(vma);
            file?.Put();
            return addr;
        }
        vma.Start = addr;
        vma.File?.GetUser();
        lock (_mmLock) _vmas.Add(vma);
        return addr;
    }

    private long MapReal(Vma vma)
    {
        void* va = HostLibc.Mmap(null, (nuint)vma.Length, HostLibc.PROT_NONE, HostLibc.MAP_PRIVATE | HostLibc.MAP_ANONYMOUS | HostLibc.MAP_NORESERVE, -1, 0);
        if (HostLibc.MapFailed(va)) return -Errno.ENOMEM;
        int prot = (vma.Prot & Posix.PROT_READ) != 0 || vma.Prot == 0 ? HostLibc.PROT_READ : 0;
        if (vma.Writable) prot |= HostLibc.PROT_WRITE;
        int n = vma.PageCount;
        var pages = vma.Pages;
        int memfd = Kernel.Host.Memory.MemFd;
        for (int i = 0; i < n;)
        {
            if (!Kernel.TryResolve(pages[i], out var first)) { HostLibc.Munmap(va, (nuint)vma.Length); return -Errno.EFAULT; }
            int run = 1;
            while (i + run < n && Kernel.TryResolve(pages[i + run], out var next) && next.Value == first.Value + (ulong)run) run++;
            void* at = (byte*)va + (long)i * XenPage.Size;
            void* got = HostLibc.Mmap(at, (nuint)((long)run * XenPage.Size), prot, HostLibc.MAP_SHARED | HostLibc.MAP_FIXED, memfd, (long)first.Value * XenPage.Size);
            if (HostLibc.MapFailed(got)) { HostLibc.Munmap(va, (nuint)vma.Length); return -Errno.ENOMEM; }
            i += run;
        }
        return (long)va;
    }

    /// <inheritdoc/>
    public int Munmap(long address, long length)
    {
        if (!XenPage.IsAligned(address) || length <= 0) return -Errno.EINVAL;
        long len = XenPage.RoundUp(length);
        Vma? vma = null;
        lock (_mmLock)
        {
            foreach (var v in _vmas)
            {
                if (v.Start == address && v.Length == len) { vma = v; break; }
                if (address < v.Start + v.Length && v.Start < address + len) return -Errno.EINVAL; // partial: see remarks
            }
            if (vma is null) return 0; // nothing mapped there: Linux returns 0
            _vmas.Remove(vma);
        }
        // A halted kernel runs nothing (no close of the owner); the scratch memory goes back to the host.
        if (Kernel.IsHalted) HostLibc.Munmap((void*)vma.Start, (nuint)vma.Length);
        else Unmap(vma);
        return 0;
    }

    /// <summary>Part of <see cref="GuestKernel.Halt"/>: every mapping's memory is replaced by private scratch
    /// pages at the same addresses (a dead process's thread that touches them reads zeros and writes nowhere
    /// that matters); the mappings stay listed so that a later munmap or exit gives the addresses back.</summary>
    internal void ScrubMappingsForHalt()
    {
        lock (_mmLock)
            foreach (var v in _vmas)
                HostLibc.Mmap((void*)v.Start, (nuint)v.Length, HostLibc.PROT_READ | HostLibc.PROT_WRITE,
                    HostLibc.MAP_PRIVATE | HostLibc.MAP_ANONYMOUS | HostLibc.MAP_FIXED, -1, 0);
    }

    private static void Unmap(Vma vma)
    {
        HostLibc.Munmap((void*)vma.Start, (nuint)vma.Length);
        vma.Owner?.Close(vma);
        vma.File?.PutUser();
        vma.File?.Put();
    }

    /// <summary>The mapping containing an address, or null.</summary>
    internal Vma? FindVma(long address)
    {
        lock (_mmLock)
            foreach (var v in _vmas)
                if (address >= v.Start && address < v.Start + v.Length) return v;
        return null;
    }

    /// <summary>copy_from_user: copies user memory into <paramref name="into"/> while holding the mapping
    /// lock, so a concurrent munmap cannot pull the memory away mid-copy; -EFAULT unless the whole range
    /// lies in one readable mapping.</summary>
    internal int CopyFromUser(long address, Span<byte> into)
    {
        if (into.IsEmpty) return 0;
        lock (_mmLock)
        {
            foreach (var v in _vmas)
            {
                if (!v.Contains(address, into.Length)) continue;
                if ((v.Prot & Posix.PROT_READ) == 0) return -Errno.EFAULT;
                new ReadOnlySpan<byte>((void*)address, into.Length).CopyTo(into);
                return 0;
            }
        }
        return -Errno.EFAULT;
    }

    /// <summary>copy_to_user: the reverse of <see cref="CopyFromUser"/>; needs a writable mapping.</summary>
    internal int CopyToUser(long address, ReadOnlySpan<byte> from)
    {
        if (from.IsEmpty) return 0;
        lock (_mmLock)
        {
            foreach (var v in _vmas)
            {
                if (!v.Contains(address, from.Length)) continue;
                if (!v.Writable) return -Errno.EFAULT;
                from.CopyTo(new Span<byte>((void*)address, from.Length));
                return 0;
            }
        }
        return -Errno.EFAULT;
    }

    /// <summary>get_user_pages for one page: the guest frame behind a user address, pinned
    /// (<see cref="GuestKernel.GetPage"/>) so that a concurrent munmap cannot free and reuse it while the
    /// hypervisor copies; the caller unpins with <see cref="GuestKernel.PutPage"/>. -EFAULT if unmapped.</summary>
    internal int PinUserPage(long address, bool write, out GuestFrame gfn)
    {
        gfn = default;
        lock (_mmLock)
        {
            foreach (var v in _vmas)
            {
                if (!v.Contains(address, 1)) continue;
                if (write && !v.Writable) return -Errno.EFAULT;
                gfn = v.Pages[(address - v.Start) / XenPage.Size];
                Kernel.GetPage(gfn);
                return 0;
            }
        }
        return -Errno.EFAULT;
    }

    /// <summary>Process exit: every mapping is unmapped and every fd closed.</summary>
    public void Dispose()
    {
        List<Vma> vmas;
        lock (_mmLock)
        {
            vmas = new List<Vma>(_vmas);
            _vmas.Clear();
        }
        if (Kernel.IsHalted)
        {
            // The domain is gone: only the emulator's own resources go back (the scratch address ranges).
            foreach (var v in vmas) HostLibc.Munmap((void*)v.Start, (nuint)v.Length);
            lock (_fdLock)
            {
                _exited = true;
                Array.Clear(_fds);
            }
            Kernel.OnProcessExit(this);
            return;
        }
        foreach (var v in vmas) Unmap(v);
        var files = new List<KernelFile>();
        lock (_fdLock)
        {
            _exited = true;
            for (int i = 0; i < _fds.Length; i++)
            {
                if (_fds[i] is { } f && f != Reserved) files.Add(f);
                _fds[i] = null;
            }
        }
        foreach (var f in files)
        {
            f.PutUser();
            f.Put();
        }
        Kernel.OnProcessExit(this);
    }

    private sealed class ReservedMarker : KernelFile
    {
        protected override void Release() { }
    }

    private sealed class AnonymousOwner(GuestKernel kernel) : IVmaOwner
    {
        public void Close(Vma vma)
        {
            foreach (var g in vma.Pages) kernel.FreePage(g);
        }
    }
}
