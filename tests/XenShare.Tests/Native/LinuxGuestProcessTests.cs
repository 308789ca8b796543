using System.Runtime.InteropServices;
using System.Text;
using XenShare.Abi;
using XenShare.Native;

namespace XenShare.Tests.Native;

/// <summary>The native backend on ordinary files, memfds and pipes (no /dev/xen needed).</summary>
[Collection(NativeSyscallsGroup.Name)]
public sealed class LinuxGuestProcessTests : IDisposable
{
    private static readonly int Page = Environment.SystemPageSize;
    private readonly LinuxGuestProcess _process = new();

    public void Dispose() => _process.Dispose();

    /// <summary>A memfd owned by <see cref="_process"/> (created raw, then dup'ed through the process).</summary>
    private int OwnedMemfd(string name, long size)
    {
        int raw = Interop.Libc.MemfdCreate(name, Interop.Libc.MFD_CLOEXEC);
        Assert.True(raw >= 0, "memfd_create: " + Errno.Name(Marshal.GetLastPInvokeError()));
        try
        {
            Assert.Equal(0, Interop.Libc.Ftruncate(raw, size));
            int fd = _process.Dup(raw);
            Assert.True(fd >= 0, "dup: " + Errno.Name(-fd));
            return fd;
        }
        finally
        {
            Assert.Equal(0, Interop.Libc.Close(raw));
        }
    }

    private static unsafe (int Read, int Write) Pipe()
    {
        int* fds = stackalloc int[2];
        Assert.Equal(0, Interop.Libc.Pipe2(fds, Posix.O_CLOEXEC));
        return (fds[0], fds[1]);
    }

    [Fact]
    public void Open_MissingPath_IsENOENT()
    {
        Assert.Equal(-Errno.ENOENT, _process.Open("/nonexistent/xenshare-" + Guid.NewGuid().ToString("N"), Posix.O_RDONLY));
        Assert.Equal(0, _process.OwnedFdCount);
    }

    [Fact]
    public void Open_NullOrEmbeddedNulPath_IsRefusedWithoutThrowing()
    {
        Assert.Equal(-Errno.EFAULT, _process.Open(null!, Posix.O_RDONLY));
        Assert.Equal(-Errno.EINVAL, _process.Open("/dev/null\0/etc/passwd", Posix.O_RDONLY));
    }

    [Fact]
    public void Close_MinusOne_IsEBADF()
    {
        Assert.Equal(-Errno.EBADF, _process.Close(-1));
    }

    [Fact]
    public void Close_Twice_SecondIsEBADF()
    {
        int fd = _process.Open("/dev/null", Posix.O_RDONLY | Posix.O_CLOEXEC);
        Assert.True(fd >= 0);
        Assert.Equal(1, _process.OwnedFdCount);

        Assert.Equal(0, _process.Close(fd));
        Assert.Equal(0, _process.OwnedFdCount);
        Assert.Equal(-Errno.EBADF, _process.Close(fd));
    }

    [Fact]
    public void Close_FdNotOwned_StillCallsClose()
    {
        (int r, int w) = Pipe();
        Assert.Equal(0, _process.Close(r));
        Assert.Equal(0, _process.Close(w));
        Assert.Equal(-Errno.EBADF, _process.Lseek(r, 0, Posix.SEEK_CUR));
    }

    [Fact]
    public void Ioctl_GntDevMapOnDevNull_IsENOTTY()
    {
        int fd = _process.Open("/dev/null", Posix.O_RDWR | Posix.O_CLOEXEC);
        Assert.True(fd >= 0);
        var arg = new byte[Marshal.SizeOf<ioctl_gntdev_map_grant_ref>()];
        arg[0] = 1; // count

        Assert.Equal(-Errno.ENOTTY, _process.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg));
        Assert.Equal(-Errno.ENOTTY, _process.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, Span<byte>.Empty));
        Assert.Equal(0, _process.Close(fd));
    }

    [Fact]
    public void Ioctl_BadFd_IsEBADF()
    {
        Assert.Equal(-Errno.EBADF, _process.Ioctl(-1, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, new byte[16]));
    }

    [Fact]
    public void Ioctl_BufferShorterThanTheArgument_IsEFAULT_BeforeTheKernelWritesPastIt()
    {
        int fd = _process.Open("/dev/null", Posix.O_RDWR | Posix.O_CLOEXEC);
        Assert.True(fd >= 0);

        // Shorter than the size encoded in the request.
        Assert.Equal(-Errno.EFAULT, _process.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, new byte[8]));

        // Long enough for the header but not for the 3 refs the count declares (IMP_TO_REFS writes them).
        var imp = new byte[Marshal.SizeOf<ioctl_gntdev_dmabuf_imp_to_refs>()];
        MemoryMarshal.Write(imp.AsSpan(4), 3u);
        Assert.Equal(-Errno.EFAULT, _process.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, imp));

        var alloc = new byte[Marshal.SizeOf<ioctl_gntalloc_alloc_gref>() + 4];
        MemoryMarshal.Write(alloc.AsSpan(4), 3u);
        Assert.Equal(-Errno.ENOTTY, _process.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, alloc));
        MemoryMarshal.Write(alloc.AsSpan(4), 4u);
        Assert.Equal(-Errno.EFAULT, _process.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, alloc));
    }

    [Fact]
    public void WriteReadLseek_OnTempFile()
    {
        string path = Path.Combine(Path.GetTempPath(), "xenshare-native-" + Guid.NewGuid().ToString("N"));
        try
        {
            File.WriteAllBytes(path, []);
            int fd = _process.Open(path, Posix.O_RDWR | Posix.O_CLOEXEC);
            Assert.True(fd >= 0);
            byte[] hello = Encoding.ASCII.GetBytes("hello, grant");

            Assert.Equal(hello.Length, _process.Write(fd, hello));
            Assert.Equal(hello.Length, _process.Lseek(fd, 0, Posix.SEEK_END));
            Assert.Equal(7, _process.Lseek(fd, 7, Posix.SEEK_SET));
            var back = new byte[64];
            Assert.Equal(hello.Length - 7, _process.Read(fd, back));
            Assert.Equal("grant", Encoding.ASCII.GetString(back, 0, 5));
            Assert.Equal(0, _process.Read(fd, back)); // EOF
            Assert.Equal(0, _process.Read(fd, Span<byte>.Empty));
            Assert.Equal(-Errno.EINVAL, _process.Lseek(fd, 0, 42));
            Assert.Equal(0, _process.Close(fd));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void ReadWrite_BadFd_AndWrongDirection()
    {
        var buffer = new byte[8];
        Assert.Equal(-Errno.EBADF, _process.Read(-1, buffer));
        Assert.Equal(-Errno.EBADF, _process.Write(-1, buffer));

        int fd = _process.Open("/dev/null", Posix.O_RDONLY | Posix.O_CLOEXEC);
        Assert.Equal(-Errno.EBADF, _process.Write(fd, buffer));
        Assert.Equal(0, _process.Close(fd));
    }

    [Fact]
    public void Lseek_OnPipe_IsESPIPE()
    {
        (int r, int w) = Pipe();
        try
        {
            Assert.Equal(-Errno.ESPIPE, _process.Lseek(r, 0, Posix.SEEK_END));
        }
        finally
        {
            Interop.Libc.Close(r);
            Interop.Libc.Close(w);
        }
    }

    [Fact]
    public void Dup_ThenCloseBoth()
    {
        int fd = OwnedMemfd("xenshare-dup", Page);
        Assert.Equal(3, _process.Write(fd, "abc"u8));

        int copy = _process.Dup(fd);
        Assert.True(copy >= 0 && copy != fd);
        Assert.Equal(2, _process.OwnedFdCount);

        // A dup shares the file offset.
        Assert.Equal(3, _process.Lseek(copy, 0, Posix.SEEK_CUR));
        Assert.Equal(0, _process.Close(fd));
        Assert.Equal(0, _process.Close(copy));
        Assert.Equal(0, _process.OwnedFdCount);
        Assert.Equal(-Errno.EBADF, _process.Dup(-1));
    }

    [Fact]
    public void Mmap_SharedMemfd_WritesAreVisibleToRead()
    {
        int fd = OwnedMemfd("xenshare-mmap", 2L * Page);
        long address = _process.Mmap(fd, 0, 2L * Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(address > 0, "mmap: " + Errno.Name((int)-address));
        Assert.Equal(1, _process.OwnedMappingCount);

        Span<byte> memory = GuestMemory.AsSpan(address, 2 * Page);
        "granted"u8.CopyTo(memory[Page..]);

        Assert.Equal(Page, _process.Lseek(fd, Page, Posix.SEEK_SET));
        var back = new byte[7];
        Assert.Equal(7, _process.Read(fd, back));
        Assert.Equal("granted"u8.ToArray(), back);

        Assert.Equal(0, _process.Munmap(address, 2L * Page));
        Assert.Equal(0, _process.OwnedMappingCount);
        Assert.Equal(0, _process.Close(fd));
    }

    [Fact]
    public void Mmap_Anonymous()
    {
        long address = _process.Mmap(-1, 0, 100, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(address > 0);

        Span<byte> memory = GuestMemory.AsSpan(address, 100);
        Assert.True(memory.IndexOfAnyExcept((byte)0) < 0); // anonymous memory starts zeroed
        memory.Fill(0xa5);
        Assert.Equal(0xa5, memory[99]);

        // The length was rounded up to a page; unmapping 100 bytes unmaps that page.
        Assert.Equal(0, _process.Munmap(address, 100));
        Assert.Equal(0, _process.OwnedMappingCount);
    }

    [Fact]
    public void Mmap_BadArguments_ReturnErrnoWithoutCrashing()
    {
        int rw = Posix.PROT_READ | Posix.PROT_WRITE;
        int anon = Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS;
        Assert.Equal(-Errno.EINVAL, _process.Mmap(-1, 0, -4096, rw, anon));
        Assert.Equal(-Errno.EINVAL, _process.Mmap(-1, 0, long.MinValue, rw, anon));
        Assert.Equal(-Errno.EINVAL, _process.Mmap(-1, 0, 0, rw, anon));
        Assert.Equal(-Errno.EBADF, _process.Mmap(-1, 0, Page, rw, Posix.MAP_SHARED));
        Assert.Equal(0, _process.OwnedMappingCount);
    }

    [Fact]
    public void Munmap_BadLengthOrAddress_IsEINVAL()
    {
        long address = _process.Mmap(-1, 0, 2L * Page, Posix.PROT_READ, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(address > 0);

        Assert.Equal(-Errno.EINVAL, _process.Munmap(address, 0));
        Assert.Equal(-Errno.EINVAL, _process.Munmap(address, -1));
        Assert.Equal(-Errno.EINVAL, _process.Munmap(address + 1, Page));
        Assert.Equal(-Errno.EINVAL, _process.Munmap(address, long.MaxValue));

        // Beyond what this process mapped: refused rather than unmapping the runtime's memory.
        Assert.Equal(-Errno.EINVAL, _process.Munmap(address, 3L * Page));
        Assert.Equal(1, _process.OwnedMappingCount);
        Assert.Equal(0, _process.Munmap(address, 2L * Page));
        Assert.Equal(-Errno.EINVAL, _process.Munmap(address, 2L * Page)); // no longer ours
    }

    [Fact]
    public void Munmap_Partial_KeepsTheRestOwned()
    {
        long address = _process.Mmap(-1, 0, 3L * Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        Assert.True(address > 0);

        Assert.Equal(0, _process.Munmap(address + Page, Page)); // the middle page
        Assert.Equal(2, _process.OwnedMappingCount);
        GuestMemory.AsSpan(address, Page)[0] = 1;
        GuestMemory.AsSpan(address + (2L * Page), Page)[0] = 2;

        Assert.Equal(-Errno.EINVAL, _process.Munmap(address, 3L * Page)); // the hole is not ours
        Assert.Equal(0, _process.Munmap(address + (2L * Page), Page));
        Assert.Equal(0, _process.Munmap(address, Page));
        Assert.Equal(0, _process.OwnedMappingCount);
    }

    [Fact]
    public void Poll_MemfdIsReadable()
    {
        int fd = OwnedMemfd("xenshare-poll", Page);
        Span<PollFd> fds = [new PollFd { Fd = fd, Events = Posix.POLLIN }];

        Assert.Equal(1, _process.Poll(fds, 0));
        Assert.Equal(Posix.POLLIN, fds[0].REvents & Posix.POLLIN);
        Assert.Equal(0, _process.Close(fd));
    }

    [Fact]
    public void Poll_Pipe_TimesOutThenBecomesReadable()
    {
        (int r, int w) = Pipe();
        try
        {
            Span<PollFd> fds = [new PollFd { Fd = r, Events = Posix.POLLIN }];
            Assert.Equal(0, _process.Poll(fds, 20));
            Assert.Equal(0, fds[0].REvents);

            Assert.Equal(1, _process.Write(w, "x"u8));
            Assert.Equal(1, _process.Poll(fds, 10_000));
            Assert.Equal(Posix.POLLIN, fds[0].REvents);

            fds[0] = new PollFd { Fd = 1_000_000, Events = Posix.POLLIN }; // far beyond any open fd
            Assert.Equal(1, _process.Poll(fds, 0));
            Assert.Equal(Posix.POLLNVAL, fds[0].REvents);
            Assert.Equal(0, _process.Poll([], 0));
        }
        finally
        {
            Interop.Libc.Close(r);
            Interop.Libc.Close(w);
        }
    }

    [Fact]
    public void ConcurrentOpenCloseMapUnmap_LeavesNoRecords()
    {
        Parallel.For(0, 4, _ =>
        {
            for (int i = 0; i < 200; i++)
            {
                int fd = _process.Open("/dev/null", Posix.O_RDONLY | Posix.O_CLOEXEC);
                Assert.True(fd >= 0);
                long address = _process.Mmap(-1, 0, Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
                Assert.True(address > 0);
                GuestMemory.AsSpan(address, Page)[0] = (byte)i;
                Assert.Equal(0, _process.Munmap(address, Page));
                Assert.Equal(0, _process.Close(fd));
            }
        });

        Assert.Equal(0, _process.OwnedFdCount);
        Assert.Equal(0, _process.OwnedMappingCount);
    }

    [Fact]
    public void Dispose_ClosesAndUnmapsWhatIsLeft()
    {
        string name = "xenshare-leak-" + Guid.NewGuid().ToString("N");
        var process = new LinuxGuestProcess();
        int raw = Interop.Libc.MemfdCreate(name, Interop.Libc.MFD_CLOEXEC);
        Assert.True(raw >= 0);
        Assert.Equal(0, Interop.Libc.Ftruncate(raw, Page));
        int fd = process.Dup(raw);
        int copy = process.Dup(fd);
        Assert.Equal(0, Interop.Libc.Close(raw));
        long address = process.Mmap(fd, 0, Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(fd >= 0 && copy >= 0 && address > 0);
        Assert.Equal(2, CountOpenFds(name));
        Assert.True(IsMapped(name));

        process.Dispose();

        Assert.Equal(0, CountOpenFds(name));
        Assert.False(IsMapped(name));
        process.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => process.Open("/dev/null", Posix.O_RDONLY));
    }

    private static int CountOpenFds(string memfdName)
    {
        int count = 0;
        foreach (string entry in Directory.EnumerateFileSystemEntries("/proc/self/fd"))
        {
            string? target = null;
            try
            {
                target = new FileInfo(entry).LinkTarget;
            }
            catch (IOException)
            {
                // The fd closed while listing (the enumeration's own directory fd does that).
            }

            if (target is not null && target.Contains(memfdName, StringComparison.Ordinal))
            {
                count++;
            }
        }

        return count;
    }

    private static bool IsMapped(string memfdName) =>
        File.ReadAllText("/proc/self/maps").Contains(memfdName, StringComparison.Ordinal);
}
