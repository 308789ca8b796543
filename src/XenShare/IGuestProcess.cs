namespace XenShare;

/// <summary>
/// The seam: one process on a Xen guest, seen through the system calls a grant-sharing program uses.
/// Implemented by the native backend (real syscalls on /dev/xen/*) and by a process inside a domain of
/// the emulated host. Every call returns a value &gt;= 0 on success or <c>-errno</c> on failure, exactly
/// as the raw syscall does, and never throws for bad input.
/// </summary>
/// <remarks>
/// Addresses returned by <see cref="Mmap"/> are real addresses in this .NET process on both backends, so
/// mapped memory can be reached with <see cref="GuestMemory.AsSpan"/>; writing through a read-only mapping
/// faults, which is why the typed API hands out read-only spans for read-only mappings.
/// </remarks>
public interface IGuestProcess : IDisposable
{
    /// <summary>A short human-readable description ("native", "emulated dom1 pid 2").</summary>
    string Description { get; }

    /// <summary>open(2). Returns the new fd or -errno.</summary>
    int Open(string path, int flags);

    /// <summary>close(2). Returns 0 or -errno.</summary>
    int Close(int fd);

    /// <summary>ioctl(2) with a pointer argument: <paramref name="arg"/> is the argument buffer (the
    /// kernel reads it and writes results back into it). Returns the ioctl result or -errno.</summary>
    int Ioctl(int fd, uint request, Span<byte> arg);

    /// <summary>mmap(2) with a NULL hint. <paramref name="fd"/> -1 with MAP_ANONYMOUS maps private
    /// memory. Returns the address or -errno.</summary>
    long Mmap(int fd, long offset, long length, int prot, int flags);

    /// <summary>munmap(2). Returns 0 or -errno.</summary>
    int Munmap(long address, long length);

    /// <summary>lseek(2). Returns the new offset or -errno.</summary>
    long Lseek(int fd, long offset, int whence);

    /// <summary>dup(2). Returns the new fd or -errno.</summary>
    int Dup(int fd);

    /// <summary>read(2). Returns the byte count or -errno.</summary>
    long Read(int fd, Span<byte> buffer);

    /// <summary>write(2). Returns the byte count or -errno.</summary>
    long Write(int fd, ReadOnlySpan<byte> buffer);

    /// <summary>poll(2). Returns the number of ready fds, 0 on timeout, or -errno.</summary>
    int Poll(Span<PollFd> fds, int timeoutMs);
}
