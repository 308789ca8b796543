using System.Runtime.CompilerServices;
using XenShare.Abi;
using XenShare.Api;

namespace XenShare.Conformance;

/// <summary>The typed API's lifetimes (issue 13): use after dispose throws instead of touching unmapped memory,
/// a pin keeps a mapping alive, and forgotten handles are released by their finalizers. LT is the project's own
/// prefix (not a spec item): these are promises of the .NET API, checked on both backends.</summary>
internal static class LifetimeScenarios
{
    public static IEnumerable<ConformanceScenario> All()
    {
        yield return new("LT01", "typed API: use after dispose throws ObjectDisposedException", LT01);
        yield return new("LT02", "typed API: a pinned mapping stays mapped until the pin is released", LT02);
        yield return new("LT03", "typed API: forgotten fds and mappings are released by finalizers", LT03);
    }

    private static void ThrowsDisposed(Action action, string what)
    {
        try
        {
            action();
        }
        catch (ObjectDisposedException)
        {
            return;
        }
        throw new ConformanceException(what + ": expected ObjectDisposedException, nothing was thrown");
    }

    private static void LT01(ConformanceContext c)
    {
        using var sharer = GrantSharer.Open(c.PeerProcess);
        var pages = sharer.Share(c.Self, 1);
        pages.Memory.Span[0] = 0x5a;
        var dev = GrantDevice.Open(c.Process);
        var map = dev.Map(c.Peer, pages.Refs);
        Memory<byte> mapped = map.Memory;
        ReadOnlyMemory<byte> mappedRo = map.ReadOnlyMemory;
        Check.Equal((byte)0x5a, mapped.Span[0], "mapped byte");
        map.Dispose();
        ThrowsDisposed(() => _ = mapped.Span[0], "GrantMapping.Memory.Span after dispose");
        ThrowsDisposed(() => _ = mappedRo.Span[0], "GrantMapping.ReadOnlyMemory.Span after dispose");
        ThrowsDisposed(() => mapped.Pin().Dispose(), "GrantMapping.Memory.Pin after dispose");
        ThrowsDisposed(() => _ = map.Address, "GrantMapping.Address after dispose");
        ThrowsDisposed(() => map.SetUnmapNotify(0, UnmapNotify.ClearByte), "GrantMapping.SetUnmapNotify after dispose");

        Memory<byte> shared = pages.Memory;
        pages.Dispose();
        ThrowsDisposed(() => shared.Span[0] = 1, "SharedPages.Memory.Span after dispose");

        var local = ProcessBuffer.Allocate(c.Process, 4096);
        Memory<byte> own = local.Memory;
        own.Span[0] = 1;
        local.Dispose();
        ThrowsDisposed(() => own.Span[0] = 2, "ProcessBuffer.Memory.Span after dispose");

        dev.Dispose();
        ThrowsDisposed(() => dev.Map(c.Peer, [new GrantRef(8)]), "GrantDevice.Map after dispose");
        ThrowsDisposed(() => _ = dev.Fd, "GrantDevice.Fd after dispose");
        using var evt = EventChannels.Open(c.Process);
        evt.Dispose();
        ThrowsDisposed(() => evt.WaitPending(TimeSpan.Zero), "EventChannels.WaitPending after dispose");
    }

    private static unsafe void LT02(ConformanceContext c)
    {
        using var sharer = GrantSharer.Open(c.PeerProcess);
        using var pages = sharer.Share(c.Self, 1);
        pages.Memory.Span[7] = 0x77;
        using var dev = GrantDevice.Open(c.Process);
        var map = dev.Map(c.Peer, pages.Refs);
        Memory<byte> mapped = map.Memory;
        using (var pin = mapped.Pin())
        {
            map.Dispose();
            Check.True(map.IsDisposed, "disposed while pinned");
            ThrowsDisposed(() => _ = mapped.Span[0], "Memory.Span after dispose, while pinned");
            // The pin is a user: the memory is still mapped and still shows the peer's page.
            Check.Equal((byte)0x77, ((byte*)pin.Pointer)[7], "byte read through the pin after dispose");
            ((byte*)pin.Pointer)[8] = 0x88;
            Check.Equal((byte)0x88, pages.Memory.Span[8], "byte written through the pin reaches the peer's page");
        }
        ThrowsDisposed(() => mapped.Pin().Dispose(), "Pin after the last pin was released");
    }

    private static void LT03(ConformanceContext c)
    {
        var counting = new CountingProcess(c.Process);
        Forget(counting, c);
        // Each round lets finalizers run; a handle whose finalizer ran closes/unmaps through the seam.
        for (int i = 0; i < 20 && !counting.Balanced; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Check.True(counting.Opens > 0 && counting.Mmaps > 0, "the forgotten objects opened and mapped");
        Check.Equal(counting.Opens, counting.Closes, "fds closed by finalizers");
        Check.Equal(counting.Mmaps, counting.Munmaps, "mappings unmapped by finalizers");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Forget(CountingProcess p, ConformanceContext c)
    {
        var sharer = GrantSharer.Open(p);
        var pages = sharer.Share(c.Self, 1);
        pages.Memory.Span[0] = 1;
        var dev = GrantDevice.Open(p);
        var map = dev.Map(c.Self, pages.Refs);
        map.Memory.Span[1] = 2;
        _ = ProcessBuffer.Allocate(p, 4096);
        _ = EventChannels.Open(p);
        var export = dev.ExportDmaBuf(c.Self, pages.Refs);
        Check.True(export.IsOpen, "export open");
    }

    /// <summary>Counts the successful opens, closes, mmaps and munmaps that reach the seam.</summary>
    private sealed class CountingProcess(IGuestProcess inner) : IGuestProcess
    {
        private int _opens, _closes, _mmaps, _munmaps;
        public int Opens => Volatile.Read(ref _opens);
        public int Closes => Volatile.Read(ref _closes);
        public int Mmaps => Volatile.Read(ref _mmaps);
        public int Munmaps => Volatile.Read(ref _munmaps);
        public bool Balanced => Opens == Closes && Mmaps == Munmaps;
        public string Description => "counting " + inner.Description;
        public int Open(string path, int flags) => Count(inner.Open(path, flags), ref _opens);
        public int Close(int fd) => Count(inner.Close(fd), ref _closes);
        public int Ioctl(int fd, uint request, Span<byte> arg)
        {
            int rc = inner.Ioctl(fd, request, arg);
            // A dma-buf export hands out a new fd: count it as opened.
            if (rc >= 0 && request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS) Interlocked.Increment(ref _opens);
            return rc;
        }
        public long Mmap(int fd, long offset, long length, int prot, int flags)
        {
            long a = inner.Mmap(fd, offset, length, prot, flags);
            if (a >= 0) Interlocked.Increment(ref _mmaps);
            return a;
        }
        public int Munmap(long address, long length) => Count(inner.Munmap(address, length), ref _munmaps);
        public long Lseek(int fd, long offset, int whence) => inner.Lseek(fd, offset, whence);
        public int Dup(int fd) => Count(inner.Dup(fd), ref _opens);
        public long Read(int fd, Span<byte> buffer) => inner.Read(fd, buffer);
        public long Write(int fd, ReadOnlySpan<byte> buffer) => inner.Write(fd, buffer);
        public int Poll(Span<PollFd> fds, int timeoutMs) => inner.Poll(fds, timeoutMs);
        public void Dispose() { }

        private static int Count(int rc, ref int counter)
        {
            if (rc >= 0) Interlocked.Increment(ref counter);
            return rc;
        }
    }
}
