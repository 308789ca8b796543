using XenShare.Abi;
using XenShare.Api;

namespace XenShare.Conformance;

/// <summary>Library-level behaviour (LG) and the facts the real driver showed beyond the spec (RX).</summary>
internal static class LibraryScenarios
{
    public static IEnumerable<ConformanceScenario> All()
    {
        yield return new("LG01", "count 0 fails with EINVAL without calling the kernel", LG01);
        yield return new("LG04", "share_pages: deallocated after mmap, lives as long as the mapping", LG04);
        yield return new("RX01", "export domid is cut to 16 bits", RX01);
        yield return new("RX02", "the same ref twice in one export succeeds", RX02);
        yield return new("RX03", "importing one dma-buf twice: each release drops one", RX03);
        yield return new("RX04", "gntalloc: count 0 and an unknown domid succeed", RX04);
        yield return new("RX05+GT02", "refs handed out start at 8 (never 0..7)", RX05);
        yield return new("RX06", "closing the exporter's fd while imported keeps the buffer until IMP_RELEASE", RX06);
        yield return new("RX07", "export naming DOMID_SELF or an unknown domain is EINVAL", RX07);
    }

    /// <summary>Counts the calls that reach the seam.</summary>
    private sealed class CountingProcess(IGuestProcess inner) : IGuestProcess
    {
        public int Ioctls;
        public string Description => "counting " + inner.Description;
        public int Open(string path, int flags) => inner.Open(path, flags);
        public int Close(int fd) => inner.Close(fd);
        public int Ioctl(int fd, uint request, Span<byte> arg)
        {
            Interlocked.Increment(ref Ioctls);
            return inner.Ioctl(fd, request, arg);
        }
        public long Mmap(int fd, long offset, long length, int prot, int flags) => inner.Mmap(fd, offset, length, prot, flags);
        public int Munmap(long address, long length) => inner.Munmap(address, length);
        public long Lseek(int fd, long offset, int whence) => inner.Lseek(fd, offset, whence);
        public int Dup(int fd) => inner.Dup(fd);
        public long Read(int fd, Span<byte> buffer) => inner.Read(fd, buffer);
        public long Write(int fd, ReadOnlySpan<byte> buffer) => inner.Write(fd, buffer);
        public int Poll(Span<PollFd> fds, int timeoutMs) => inner.Poll(fds, timeoutMs);
        public void Dispose() { }
    }

    private static void LG01(ConformanceContext c)
    {
        var counting = new CountingProcess(c.Process);
        using var dev = GrantDevice.Open(counting);
        Check.Throws(Errno.EINVAL, () => dev.ExportDmaBuf(c.Peer, []), "typed export of 0 refs");
        Check.Throws(Errno.EINVAL, () => dev.ImportDmaBuf(0, 0, c.Peer), "typed import of 0 pages");
        Check.Equal(0, counting.Ioctls, "ioctls issued");
    }

    private static void LG04(ConformanceContext c)
    {
        using var sharer = GrantSharer.Open(c.PeerProcess);
        var pages = sharer.Share(c.Self, 1, writable: true, deallocateAfterMap: true);
        pages.Memory.Span[0] = 0x44;
        using var dev = GrantDevice.Open(c.Process);
        using (var m = dev.Map(c.Peer, [pages.Refs[0]]))
        {
            Check.Equal((byte)0x44, m.Memory.Span[0], "mapped");
            pages.Dispose();
            Check.Equal((byte)0x44, m.Memory.Span[0], "the page lives while the peer maps it");
        }
    }

    private static void RX01(ConformanceContext c)
    {
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(c.Process);
        Check.Ok(Raw.Export(c.Process, dev.Fd, Raw.ExportArg(c.Peer, g.Refs, domidRaw: 0x10000u | c.Peer.Value), out int fd), "export with domid 0x10000|peer");
        Check.Ok(c.Process.Close(fd), "close");
    }

    private static void RX02(ConformanceContext c)
    {
        using var g = new PeerGrants(c, 1);
        g.Memory[0] = 0x21;
        using var dev = GrantDevice.Open(c.Process);
        Check.Ok(Raw.Export(c.Process, dev.Fd, c.Peer, [g.Refs[0], g.Refs[0]], out int fd), "export of [r, r]");
        Check.Equal(2L * 4096, c.Process.Lseek(fd, 0, Posix.SEEK_END), "size");
        Check.Ok(c.Process.Close(fd), "close");
        int w = Raw.WaitReleased(c.Process, dev.Fd, fd, 30000);
        Check.True(w is 0 or -Errno.ENOENT, "released: " + Check.Describe(w));
    }

    private static void RX03(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 1);
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 1, c.Peer, out uint[] r1), "first import");
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 1, c.Peer, out uint[] r2), "second import");
        Check.True(r1[0] != r2[0], "each import has its own ref");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "first release");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "second release");
        Check.Errno(Errno.ENOENT, Raw.ImportRelease(p, dev.Fd, local.Fd), "third release");
    }

    private static void RX04(ConformanceContext c)
    {
        var p = c.PeerProcess;
        int ga = Raw.Open(p, GrantSharer.Path);
        try
        {
            Check.Ok(p.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, Raw.AllocArg(c.Self, 0, true)), "ALLOC count 0");
            var arg = Raw.AllocArg(c.Self, 1, true, domidRaw: 0x7fe0);
            Check.Ok(p.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg), "ALLOC to an unknown domain");
            ulong idx = System.Runtime.InteropServices.MemoryMarshal.Read<ulong>(arg.AsSpan(8));
            Check.Ok(Raw.Dealloc(p, ga, idx, 1), "DEALLOC");
        }
        finally { p.Close(ga); }
    }

    private static void RX05(ConformanceContext c)
    {
        using var g = new PeerGrants(c, 4);
        foreach (uint r in g.Refs) Check.True(r >= 8, $"ref {r} >= 8");
        using var local = new LocalDmaBuf(c, 1);
        using var dev = GrantDevice.Open(c.Process);
        using var imp = dev.ImportDmaBuf(local.Fd, 1, c.Peer);
        Check.True(imp.Refs[0].Value >= 8, $"import ref {imp.Refs[0].Value} >= 8");
    }

    private static void RX06(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        using var exporter = GrantDevice.Open(p);
        using var importer = GrantDevice.Open(p);
        Check.Ok(Raw.Export(p, exporter.Fd, c.Peer, g.Refs, out int fd), "export");
        Check.Ok(Raw.Import(p, importer.Fd, fd, 1, c.Peer, out _), "import of the exported buffer");
        Check.Ok(p.Close(fd), "close the exporter's fd");
        Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(p, exporter.Fd, fd, 0), "buffer held by the import");
        Check.Ok(Raw.ImportRelease(p, importer.Fd, fd), "IMP_RELEASE");
        int w = Raw.WaitReleased(p, exporter.Fd, fd, 30000);
        Check.True(w is 0 or -Errno.ENOENT, "released after IMP_RELEASE: " + Check.Describe(w));
    }

    private static void RX07(ConformanceContext c)
    {
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(c.Process);
        Check.Errno(Errno.EINVAL, Raw.Export(c.Process, dev.Fd, new DomainId(GrantTableConstants.DOMID_SELF), g.Refs, out _), "DOMID_SELF");
        Check.Errno(Errno.EINVAL, Raw.Export(c.Process, dev.Fd, new DomainId(0x7fe0), g.Refs, out _), "unknown domain");
    }
}
