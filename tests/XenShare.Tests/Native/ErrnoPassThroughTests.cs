using XenShare.Abi;
using XenShare.Api;
using XenShare.Native;

namespace XenShare.Tests.Native;

/// <summary>D05: the native backend reports what the kernel says, unchanged; the typed API maps errno to
/// exceptions in one place (ErrnoMapper) and keeps the number.</summary>
[Collection(NativeSyscallsGroup.Name)]
public sealed class ErrnoPassThroughTests
{
    [Fact]
    public void D05_NativeBackendPassesTheKernelErrnoUnchanged()
    {
        using var p = new LinuxGuestProcess();
        // A gntdev ioctl on a device that is not gntdev: the kernel answers ENOTTY; we pass it up as is.
        int fd = p.Open("/dev/null", Posix.O_RDWR | Posix.O_CLOEXEC);
        Assert.True(fd >= 0);
        Assert.Equal(-Errno.ENOTTY, p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, new byte[8]));
        Assert.Equal(-Errno.ENOENT, p.Open("/dev/xen/no-such-device", Posix.O_RDWR));
        Assert.Equal(0, p.Close(fd));
        Assert.Equal(-Errno.EBADF, p.Close(fd));
    }

    [Fact]
    public void D05_TypedApiKeepsTheErrnoInItsException()
    {
        // gntdev's path redirected to /dev/null: every gntdev ioctl reaches a real kernel, which says ENOTTY.
        using var p = new RedirectingProcess(new LinuxGuestProcess(), GrantDevice.Path, "/dev/null");
        using var gnt = GrantDevice.Open(p);
        var e = Assert.Throws<XenShareException>(() => gnt.ExportDmaBuf(DomainId.Dom0, [new GrantRef(8)]));
        Assert.Equal(Errno.ENOTTY, e.Errno);
        Assert.Contains("ENOTTY", e.Message, StringComparison.Ordinal);
        gnt.SetMaxGrants(16);   // LG03: ENOTTY is success there
    }

    private sealed class RedirectingProcess(IGuestProcess inner, string from, string to) : IGuestProcess
    {
        public string Description => inner.Description;
        public int Open(string path, int flags) => inner.Open(path == from ? to : path, flags);
        public int Close(int fd) => inner.Close(fd);
        public int Ioctl(int fd, uint request, Span<byte> arg) => inner.Ioctl(fd, request, arg);
        public long Mmap(int fd, long offset, long length, int prot, int flags) => inner.Mmap(fd, offset, length, prot, flags);
        public int Munmap(long address, long length) => inner.Munmap(address, length);
        public long Lseek(int fd, long offset, int whence) => inner.Lseek(fd, offset, whence);
        public int Dup(int fd) => inner.Dup(fd);
        public long Read(int fd, Span<byte> buffer) => inner.Read(fd, buffer);
        public long Write(int fd, ReadOnlySpan<byte> buffer) => inner.Write(fd, buffer);
        public int Poll(Span<PollFd> fds, int timeoutMs) => inner.Poll(fds, timeoutMs);
        public void Dispose() => inner.Dispose();
    }
}
