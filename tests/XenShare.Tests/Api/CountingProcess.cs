namespace XenShare.Tests.Api;

/// <summary>Wraps a process and counts ioctls (to prove the typed API did not call the kernel).</summary>
internal sealed class CountingProcess(IGuestProcess inner) : IGuestProcess
{
    public int Ioctls;
    public string Description => inner.Description;
    public int Open(string path, int flags) => inner.Open(path, flags);
    public int Close(int fd) => inner.Close(fd);
    public int Ioctl(int fd, uint request, Span<byte> arg) { Interlocked.Increment(ref Ioctls); return inner.Ioctl(fd, request, arg); }
    public long Mmap(int fd, long offset, long length, int prot, int flags) => inner.Mmap(fd, offset, length, prot, flags);
    public int Munmap(long address, long length) => inner.Munmap(address, length);
    public long Lseek(int fd, long offset, int whence) => inner.Lseek(fd, offset, whence);
    public int Dup(int fd) => inner.Dup(fd);
    public long Read(int fd, Span<byte> buffer) => inner.Read(fd, buffer);
    public long Write(int fd, ReadOnlySpan<byte> buffer) => inner.Write(fd, buffer);
    public int Poll(Span<PollFd> fds, int timeoutMs) => inner.Poll(fds, timeoutMs);
    public void Dispose() { }
}
