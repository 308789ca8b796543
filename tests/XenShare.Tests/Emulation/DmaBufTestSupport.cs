using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

/// <summary>
/// Shared helpers of the dma-buf tests: the four gntdev dma-buf ioctls at byte level, a granter in domU
/// (gntalloc), test importers (a single-segment scan-out device and an IOMMU device) and a configurable
/// test exporter.
/// </summary>
public abstract class DmaBufTest : EmulatorTest
{
    protected DmaBufTest() { }

    protected DmaBufTest(DomainConfig? domU, KernelOptions? kernel, DomainConfig? dom0 = null) : base(domU, kernel, dom0) { }

    protected const string GntDev = "/dev/xen/gntdev";
    protected const string GntAlloc = "/dev/xen/gntalloc";

    /// <summary>domU shares <paramref name="count"/> pages with dom0 through gntalloc; each page is filled
    /// with its index + 1 at byte 0 and 4095 (so data checks can tell pages apart).</summary>
    protected Granter Share(int count, bool writable = true, DomainId? to = null)
    {
        int ga = Open(PU, GntAlloc);
        var (index, refs) = AllocGrefs(PU, ga, to ?? Dom0.Id, count, writable);
        long va = PU.Mmap(ga, (long)index, count * 4096L, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(va > 0, $"mmap gntalloc: {va}");
        var g = new Granter(PU, ga, refs, va);
        for (int i = 0; i < count; i++) { g.Data[i * 4096] = (byte)(i + 1); g.Data[i * 4096 + 4095] = (byte)(0x80 + i); }
        return g;
    }

    protected sealed class Granter(GuestProcess p, int fd, uint[] refs, long va)
    {
        public uint[] Refs => refs;
        public int Count => refs.Length;
        public long Va => va;
        public unsafe Span<byte> Data => new((void*)va, refs.Length * 4096);

        public void Close()
        {
            Assert.Equal(0, p.Munmap(va, refs.Length * 4096L));
            Assert.Equal(0, p.Close(fd));
        }
    }

    /// <summary>Granter flags of every ref of <paramref name="g"/>.</summary>
    protected ushort[] Flags(Granter g) => g.Refs.Select(r => Entry(DomU, r).Flags).ToArray();

    protected void AssertMappedByExport(Granter g) =>
        Assert.All(Flags(g), f => Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, f));

    protected void AssertNotMapped(Granter g) =>
        Assert.All(Flags(g), f => Assert.Equal(Gtf.permit_access, f & ~Gtf.@readonly));

    // ------------------------------------------------------------ ioctls

    protected static byte[] ExpArg(uint flags, uint domid, params uint[] refs)
    {
        var arg = new byte[Math.Max(20, 16 + 4 * refs.Length)];
        MemoryMarshal.Write(arg, new ioctl_gntdev_dmabuf_exp_from_refs { flags = flags, count = (uint)refs.Length, domid = domid });
        refs.AsSpan().CopyTo(MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16)));
        return arg;
    }

    /// <summary>EXP_FROM_REFS: 0 with the new fd, or -errno.</summary>
    protected internal static int Export(GuestProcess p, int gd, uint flags, uint domid, uint[] refs, out int fd)
    {
        var arg = ExpArg(flags, domid, refs);
        fd = -1;
        int rc = p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, arg);
        if (rc == 0) fd = (int)MemoryMarshal.Read<uint>(arg.AsSpan(8));
        return rc;
    }

    protected int ExportOk(int gd, Granter g, uint flags = 0)
    {
        Assert.Equal(0, Export(P0, gd, flags, DomU.Id.Value, g.Refs, out int fd));
        Assert.True(fd >= 0);
        return fd;
    }

    protected internal static int Wait(GuestProcess p, int gd, int fd, uint ms) =>
        p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, Bytes(new ioctl_gntdev_dmabuf_exp_wait_released { fd = (uint)fd, wait_to_ms = ms }));

    protected static byte[] ImpArg(int fd, int count, uint domid, uint reserved = 0)
    {
        var arg = new byte[Math.Max(20, 16 + 4 * count)];
        MemoryMarshal.Write(arg, new ioctl_gntdev_dmabuf_imp_to_refs { fd = (uint)fd, count = (uint)count, domid = domid, reserved = reserved });
        return arg;
    }

    /// <summary>IMP_TO_REFS: 0 with the refs, or -errno.</summary>
    protected internal static int Import(GuestProcess p, int gd, int fd, int count, uint domid, out uint[] refs, uint reserved = 0)
    {
        var arg = ImpArg(fd, count, domid, reserved);
        int rc = p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, arg);
        refs = rc == 0 ? MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16, 4 * count)).ToArray() : [];
        return rc;
    }

    protected internal static int ImpRelease(GuestProcess p, int gd, int fd, uint reserved = 0) =>
        p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE, Bytes(new ioctl_gntdev_dmabuf_imp_release { fd = (uint)fd, reserved = reserved }));

    protected static int Sync(GuestProcess p, int fd, ulong flags) =>
        p.Ioctl(fd, DmaBufIoctl.DMA_BUF_IOCTL_SYNC, Bytes(new dma_buf_sync { flags = flags }));

    /// <summary>A heap buffer in dom0 (fd in P0) and its frames.</summary>
    protected (int Fd, GuestFrame[] Frames) HeapBuffer(int pages, bool contiguous = false)
    {
        int fd = SystemHeap.Allocate(P0, pages, contiguous);
        Assert.True(fd >= 0, $"heap alloc: {fd}");
        var b = DmaBufObject.Get(P0, fd, out int e)!;
        Assert.Equal(0, e);
        var frames = (GuestFrame[])b.ExporterData!;
        b.Put();
        return (fd, frames);
    }

    protected static DmaBufObject GetBuf(GuestProcess p, int fd)
    {
        var b = DmaBufObject.Get(p, fd, out int e);
        Assert.True(b is not null, $"dma_buf_get: {e}");
        return b!;
    }

    /// <summary>References to the dma-buf at <paramref name="fd"/> besides the probe's own.</summary>
    protected static int FdRefs(GuestProcess p, int fd)
    {
        var b = GetBuf(p, fd);
        int r = b.RefCount - 1;
        b.Put();
        return r;
    }

    protected static int Attachments(GuestProcess p, int fd)
    {
        var b = GetBuf(p, fd);
        int n = b.AttachmentCount;
        b.Put();
        return n;
    }

    /// <summary>Splits dom0's unpopulated pool so that the next multi-page allocation is scattered:
    /// allocates single-page maps and frees every other one. Returns the gntdev fd holding the rest.</summary>
    protected int FragmentUnpopulated(int holes)
    {
        int gd = Open(P0, GntDev);
        var offs = new List<ulong>();
        for (int i = 0; i < 2 * holes; i++) offs.Add(MapGrantRefs(P0, gd, DomU.Id, 12345));
        for (int i = 0; i < offs.Count; i += 2) Assert.Equal(0, UnmapGrantRef(P0, gd, offs[i], 1));
        return gd;
    }

    // ------------------------------------------------------------ blocked waiters

    /// <summary>Runs <paramref name="wait"/> on a dedicated thread; the task completes with its result.</summary>
    protected static (Thread Thread, Task<int> Result) StartWaiter(Func<int> wait)
    {
        var tcs = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var t = new Thread(() =>
        {
            try { tcs.SetResult(wait()); }
            catch (Exception e) { tcs.SetException(e); }
        }) { IsBackground = true, Name = "dmabuf waiter" };
        t.Start();
        return (t, tcs.Task);
    }

    /// <summary>Waits until <paramref name="t"/> is inside a blocking EXP_WAIT_RELEASED in dom0 that found
    /// its export (the kernel tracks them by thread), or has ended. Exact: such a waiter returns 0 when the
    /// buffer is released, never ENOENT. Yields while waiting; fails after 30 s.</summary>
    protected void WaitUntilBlocked(Thread t)
    {
        var total = System.Diagnostics.Stopwatch.StartNew();
        while (!Dom0.Kernel.IsInReleaseWait(t.ManagedThreadId))
        {
            if (!t.IsAlive) return;
            if (total.Elapsed > TimeSpan.FromSeconds(30)) Assert.Fail("the waiter never entered its wait");
            Thread.Yield();
        }
    }

    protected static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    // ------------------------------------------------------------ test importers

    /// <summary>A scan-out engine: a direct-mapped device that needs the buffer in one segment.</summary>
    protected sealed class ScanoutImporter(GuestKernel kernel)
    {
        public DmaDevice Device { get; } = new(kernel, "scanout", DmaTranslation.Direct);
        public DmaBufAttachment? Attachment { get; private set; }
        public SgTable? Table { get; private set; }

        /// <summary>Attaches and maps; refuses (EINVAL) a buffer that is not one segment.</summary>
        public int Import(DmaBufObject buf)
        {
            var att = buf.Attach(Device, out int e);
            if (att is null) return e;
            var t = buf.MapAttachment(att, DmaDirection.ToDevice, out e);
            if (t is null) { buf.Detach(att); return e; }
            if (t.Segments.Count != 1)
            {
                buf.UnmapAttachment(att, t, DmaDirection.ToDevice);
                buf.Detach(att);
                return -Errno.EINVAL;
            }
            Attachment = att;
            Table = t;
            return 0;
        }

        public byte ReadByte(long offset)
        {
            var b = new byte[1];
            Assert.Equal(0, Device.DmaRead(Table!.Segments[0].DmaAddress + (ulong)offset, b));
            return b[0];
        }

        public void Release(DmaBufObject buf)
        {
            buf.UnmapAttachment(Attachment!, Table!, DmaDirection.ToDevice);
            buf.Detach(Attachment!);
            Attachment = null;
            Table = null;
        }
    }

    /// <summary>A configurable exporter of <c>pages</c> RAM pages of dom0, counting every callback.</summary>
    protected sealed class TestExporter
    {
        private readonly GuestKernel _kernel;

        public TestExporter(GuestKernel kernel, int pages, bool contiguous = false)
        {
            _kernel = kernel;
            Frames = new GuestFrame[pages];
            if (contiguous)
            {
                Assert.True(kernel.TryAllocContiguous(pages, block: false, out var first));
                for (int i = 0; i < pages; i++) Frames[i] = new GuestFrame(first.Value + (ulong)i);
            }
            else Assert.True(kernel.TryAllocPages(Frames, zero: true));
        }

        public GuestFrame[] Frames { get; }
        public int AttachErrno { get; set; }
        public int MapErrno { get; set; }
        public int SgOffset { get; set; }
        /// <summary>Map with DMA addresses only (no page list), as a VRAM exporter would.</summary>
        public bool NoPages { get; set; }
        public bool HasCpuAccess { get; set; } = true;
        public bool WithMap { get; set; } = true;
        public bool WithUnmap { get; set; } = true;
        public bool WithRelease { get; set; } = true;
        public long? SizeOverride { get; set; }

        private int _attaches, _detaches, _maps, _unmaps, _releases, _begins, _ends;
        public int Attaches => Volatile.Read(ref _attaches);
        public int Detaches => Volatile.Read(ref _detaches);
        public int Maps => Volatile.Read(ref _maps);
        public int Unmaps => Volatile.Read(ref _unmaps);
        public int Releases => Volatile.Read(ref _releases);
        public int Begins => Volatile.Read(ref _begins);
        public int Ends => Volatile.Read(ref _ends);
        public List<DmaDirection> MapDirections { get; } = new();
        public List<DmaDirection> CpuDirections { get; } = new();

        public DmaBufOps Ops => new()
        {
            Attach = a => { Interlocked.Increment(ref _attaches); return AttachErrno; },
            Detach = a => Interlocked.Increment(ref _detaches),
            Map = WithMap ? MapImpl : null,
            Unmap = WithUnmap ? (a, t, d) => { Interlocked.Increment(ref _unmaps); a.Device.Unmap(t); } : null,
            Release = WithRelease ? _ => { Interlocked.Increment(ref _releases); foreach (var g in Frames) _kernel.FreePage(g); } : null,
            BeginCpuAccess = HasCpuAccess ? (_, d) => { Interlocked.Increment(ref _begins); lock (CpuDirections) CpuDirections.Add(d); return 0; } : null,
            EndCpuAccess = HasCpuAccess ? (_, d) => { Interlocked.Increment(ref _ends); lock (CpuDirections) CpuDirections.Add(d); return 0; } : null,
        };

        private SgTable? MapImpl(DmaBufAttachment a, DmaDirection dir, out int errno)
        {
            Interlocked.Increment(ref _maps);
            lock (MapDirections) MapDirections.Add(dir);
            errno = MapErrno;
            if (errno != 0) return null;
            var t = a.Device.Map(Frames, dir);
            if (t is null) { errno = -Errno.ENOMEM; return null; }
            if (SgOffset != 0 || NoPages)
            {
                var segs = t.Segments.ToArray();
                if (SgOffset != 0) segs[0] = segs[0] with { Offset = SgOffset };
                a.Device.Unmap(t);
                t = new SgTable(NoPages ? [] : Frames, NoPages ? [] : [.. t.Entries], segs, a.Device, dir, []);
            }
            return t;
        }

        /// <summary>Exports and installs an fd in <paramref name="p"/>; frees the pages when export fails.</summary>
        public int Install(GuestProcess p, out DmaBufObject? buffer)
        {
            buffer = DmaBufObject.Export(_kernel, Ops, SizeOverride ?? Frames.Length * 4096L, Frames, out int errno);
            if (buffer is null)
            {
                foreach (var g in Frames) _kernel.FreePage(g);
                return errno;
            }
            int fd = buffer.InstallFd(p);
            Assert.True(fd >= 0);
            return fd;
        }
    }
}
