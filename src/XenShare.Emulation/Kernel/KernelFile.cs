using XenShare.Abi;

namespace XenShare.Emulation.Kernel;

/// <summary>
/// An open file of the emulated kernel (struct file): shared by every fd that dup'ed it, every mmap of
/// it and every in-kernel reference; <see cref="Release"/> runs once, when the last reference drops.
/// </summary>
internal abstract class KernelFile
{
    private int _refs = 1;
    private int _userRefs;

    /// <summary>The open flags (O_NONBLOCK matters to read).</summary>
    public int OpenFlags { get; set; }

    /// <summary>Live references (fds, mmaps, kernel users).</summary>
    public int RefCount => Volatile.Read(ref _refs);

    /// <summary>Takes a reference (fget/get_file).</summary>
    public void Get()
    {
        if (Interlocked.Increment(ref _refs) <= 1) throw new InvalidOperationException("get of a released file");
    }

    /// <summary>Takes a reference unless the file is already being released (get_file_rcu).</summary>
    public bool TryGet()
    {
        while (true)
        {
            int r = Volatile.Read(ref _refs);
            if (r <= 0) return false;
            if (Interlocked.CompareExchange(ref _refs, r + 1, r) == r) return true;
        }
    }

    /// <summary>Drops a reference (fput); the last one releases the file.</summary>
    public void Put()
    {
        int r = Interlocked.Decrement(ref _refs);
        if (r == 0) Release();
        else if (r < 0) throw new InvalidOperationException("put of a released file");
    }

    /// <summary>A user-space holder (an fd or an mmap) takes the file.</summary>
    public void GetUser() => Interlocked.Increment(ref _userRefs);

    /// <summary>A user-space holder lets go; the last one calls <see cref="OnLastUserReference"/> even while
    /// kernel references (exported buffers pinning the file) keep it alive.</summary>
    public void PutUser()
    {
        if (Interlocked.Decrement(ref _userRefs) == 0) OnLastUserReference();
    }

    /// <summary>No fd and no mapping of this file is left in any process: only kernel references remain.</summary>
    protected virtual void OnLastUserReference() { }

    public virtual int Ioctl(GuestProcess caller, uint request, Span<byte> arg) => -Errno.ENOTTY;

    /// <summary>The asynchronous form of a blocking ioctl, or null when the request has none.</summary>
    public virtual Task<int>? IoctlAsync(GuestProcess caller, uint request, ReadOnlyMemory<byte> arg, CancellationToken cancellationToken) => null;

    public virtual int Mmap(GuestProcess caller, Vma vma) => -Errno.ENODEV;

    public virtual long Read(GuestProcess caller, Span<byte> buffer) => -Errno.EINVAL;

    public virtual long Write(GuestProcess caller, ReadOnlySpan<byte> buffer) => -Errno.EINVAL;

    public virtual long Lseek(long offset, int whence) => -Errno.ESPIPE;

    /// <summary>Ready events now (POLLIN, POLLOUT, POLLERR).</summary>
    public virtual short Poll() => (short)(Posix.POLLIN | Posix.POLLOUT);

    /// <summary>The last reference is gone.</summary>
    protected abstract void Release();
}
