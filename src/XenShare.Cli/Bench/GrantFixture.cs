using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Drivers;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Cli.Bench;

/// <summary>
/// The shared setup of the grant measurements (the <c>bench</c> command and the BenchmarkDotNet project,
/// which links this file): an emulated host with dom0 and one domU; the domU shares <see cref="Pages"/>
/// writable pages with dom0 through <c>/dev/xen/gntalloc</c> (ALLOC_GREF), exactly as a frontend would.
/// Helpers build the hypercall batches and the gntdev GRANT_COPY argument that dom0 issues, and a gntdev
/// map in dom0 (MAP_GRANT_REF + mmap, as a backend maps) for measuring gntdev's own map and unmap.
/// </summary>
internal sealed class GrantFixture : IDisposable
{
    private readonly List<GuestFrame> _dom0Unpopulated = new();
    private readonly List<GuestFrame> _dom0Ram = new();
    private readonly int _gntAllocFd;
    private readonly ulong _gntAllocIndex;
    private int _gntDevFd = -1;
    private int _gntDevMapFd = -1;
    private ulong _gntDevMapIndex;
    private int _gntDevMapCount;
    private long _gntDevMapping;
    private long _copyMapping;
    private long _copyMappingLength;
    private bool _disposed;

    /// <summary>Boots the host and shares <paramref name="pages"/> domU pages with dom0.</summary>
    public GrantFixture(int pages, int machineFrames = 65536)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(pages);
        Pages = pages;
        var kernel = new KernelOptions { GntAllocLimit = Math.Max(1024, pages) };
        Host = new EmulatedHost(machineFrames, null, kernel);
        DomU = Host.CreateGuest(new DomainConfig { RamPages = Math.Max(4096, pages + 1024) }, kernel);
        Dom0Process = Host.Dom0.StartProcess();
        DomUProcess = DomU.StartProcess();

        _gntAllocFd = Check(DomUProcess.Open("/dev/xen/gntalloc", Posix.O_RDWR | Posix.O_CLOEXEC), "open gntalloc");
        var arg = new byte[Math.Max(24, GntAllocIoctl.GrefIdsOffset + 4 * pages)];
        MemoryMarshal.Write(arg, new ioctl_gntalloc_alloc_gref
        {
            domid = DomainId.Dom0.Value,
            flags = GntAllocIoctl.GNTALLOC_FLAG_WRITABLE,
            count = (uint)pages,
        });
        Check(DomUProcess.Ioctl(_gntAllocFd, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg), "IOCTL_GNTALLOC_ALLOC_GREF");
        _gntAllocIndex = MemoryMarshal.Read<ioctl_gntalloc_alloc_gref>(arg).index;
        Refs = MemoryMarshal.Cast<byte, uint>(arg.AsSpan(GntAllocIoctl.GrefIdsOffset, 4 * pages)).ToArray();

        // Fill the shared pages so copies move real data.
        for (int i = 0; i < pages; i++) SourceSpan(i).Fill((byte)(i * 7 + 1));
    }

    /// <summary>The emulated host.</summary>
    public EmulatedHost Host { get; }

    /// <summary>The hypervisor.</summary>
    public XenHost Xen => Host.Xen;

    /// <summary>dom0's domain (the mapping side).</summary>
    public Domain Dom0 => Host.Dom0.Domain;

    /// <summary>The granting guest.</summary>
    public EmulatedGuest DomU { get; }

    /// <summary>A process in dom0 (backend side).</summary>
    public GuestProcess Dom0Process { get; }

    /// <summary>A process in domU (frontend side; holds the gntalloc file).</summary>
    public GuestProcess DomUProcess { get; }

    /// <summary>Number of shared pages.</summary>
    public int Pages { get; }

    /// <summary>The grant refs domU handed to dom0.</summary>
    public uint[] Refs { get; }

    /// <summary>The machine frame behind shared page <paramref name="i"/> (via domU's grant entry and P2M).</summary>
    public MachineFrame SourceFrame(int i)
    {
        var (_, _, frame) = DomU.Domain.GrantTable.ReadEntry(new GrantRef(Refs[i]));
        if (!DomU.Domain.P2M.TryGet(new GuestFrame(frame), out var mfn, out _)) throw new InvalidOperationException($"gref {Refs[i]}: no frame");
        return mfn;
    }

    /// <summary>The bytes of shared page <paramref name="i"/> in machine memory.</summary>
    public Span<byte> SourceSpan(int i) => Xen.Memory.FrameSpan(SourceFrame(i));

    /// <summary>Takes <paramref name="count"/> unpopulated dom0 GFNs (returned on dispose).</summary>
    public GuestFrame[] TakeDom0Unpopulated(int count)
    {
        var gfns = new GuestFrame[count];
        if (!Host.Dom0.Kernel.TryAllocUnpopulated(gfns)) throw new InvalidOperationException("dom0 has no unpopulated pages left");
        _dom0Unpopulated.AddRange(gfns);
        return gfns;
    }

    /// <summary>Takes <paramref name="count"/> zeroed dom0 RAM pages (returned on dispose).</summary>
    public GuestFrame[] TakeDom0Ram(int count)
    {
        var gfns = new GuestFrame[count];
        if (!Host.Dom0.Kernel.TryAllocPages(gfns, zero: true)) throw new InvalidOperationException("dom0 RAM exhausted");
        _dom0Ram.AddRange(gfns);
        return gfns;
    }

    /// <summary>The machine frame behind a dom0 GFN.</summary>
    public MachineFrame Dom0Frame(GuestFrame gfn) =>
        Dom0.P2M.TryGet(gfn, out var mfn, out _) ? mfn : throw new InvalidOperationException($"dom0 gfn {gfn} is empty");

    /// <summary>GNTTABOP_map_grant_ref ops for shared pages [first, first + count) into unpopulated dom0
    /// GFNs (host_map, writable), as gntdev builds them.</summary>
    public GnttabMapGrantRef[] MapOps(int first, int count)
    {
        var gfns = TakeDom0Unpopulated(count);
        var ops = new GnttabMapGrantRef[count];
        for (int i = 0; i < count; i++)
            ops[i] = new GnttabMapGrantRef { HostAddr = XenPage.AddressOf(gfns[i].Value), Flags = GntMap.host_map, Ref = new GrantRef(Refs[first + i]), Dom = DomU.Id };
        return ops;
    }

    /// <summary>One batch of map + unmap: <see cref="XenHost.MapGrantRefs"/> then
    /// <see cref="XenHost.UnmapGrantRefs"/> with the handles just returned. Allocation-free.</summary>
    public void MapUnmap(Span<GnttabMapGrantRef> map, Span<GnttabUnmapGrantRef> unmap)
    {
        Xen.MapGrantRefs(Dom0, map);
        for (int i = 0; i < map.Length; i++)
        {
            ref var u = ref unmap[i];
            u.Handle = map[i].Handle;
            u.HostAddr = map[i].HostAddr;
            u.DevBusAddr = 0;
        }
        Xen.UnmapGrantRefs(Dom0, unmap);
    }

    /// <summary>Maps shared pages [first, first + count) into dom0 through gntdev exactly as a backend does
    /// (open, IOCTL_GNTDEV_MAP_GRANT_REF, writable shared mmap) and returns the gntdev map behind the mapping,
    /// its grants mapped. Undone on dispose.</summary>
    internal GrantMap PrepareGntDevMap(int first, int count)
    {
        if (_gntDevMapFd >= 0) throw new InvalidOperationException("gntdev map already prepared");
        _gntDevMapFd = Check(Dom0Process.Open("/dev/xen/gntdev", Posix.O_RDWR | Posix.O_CLOEXEC), "open gntdev");
        int refsAt = GntDevIoctl.MapGrantRefRefsOffset;
        var arg = new byte[Math.Max(System.Runtime.CompilerServices.Unsafe.SizeOf<ioctl_gntdev_map_grant_ref>(), refsAt + 8 * count)];
        MemoryMarshal.Write(arg, new ioctl_gntdev_map_grant_ref { count = (uint)count });
        var refs = MemoryMarshal.Cast<byte, ioctl_gntdev_grant_ref>(arg.AsSpan(refsAt, 8 * count));
        for (int i = 0; i < count; i++) refs[i] = new ioctl_gntdev_grant_ref { domid = DomU.Id.Value, @ref = Refs[first + i] };
        Check(Dom0Process.Ioctl(_gntDevMapFd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg), "IOCTL_GNTDEV_MAP_GRANT_REF");
        _gntDevMapIndex = MemoryMarshal.Read<ioctl_gntdev_map_grant_ref>(arg).index;
        _gntDevMapCount = count;
        _gntDevMapping = Dom0Process.Mmap(_gntDevMapFd, (long)_gntDevMapIndex, (long)count * XenPage.Size, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        if (_gntDevMapping < 0) throw new InvalidOperationException($"mmap(gntdev) failed: {Errno.Name((int)-_gntDevMapping)}");
        return Dom0Process.FindVma(_gntDevMapping)?.Tag as GrantMap ?? throw new InvalidOperationException("no gntdev map behind the mapping");
    }

    /// <summary>One unmap + map of a gntdev map through gntdev's own code: the unmap that
    /// UNMAP_GRANT_REF's last user (and a PV munmap) runs - the notify byte, the pages' idle check, then
    /// every live grant in one GNTTABOP_unmap_grant_ref batch - and the mapping mmap runs
    /// (gntdev_map_grant_pages: one GNTTABOP_map_grant_ref batch). Returns the map's result (0, or -EINVAL
    /// when a grant did not map). Allocation-free after warm-up.</summary>
    internal static int GntDevUnmapMap(GrantMap map)
    {
        ArgumentNullException.ThrowIfNull(map);
        map.StartUnmap();
        return map.MapGrants(GntMap.host_map);
    }

    /// <summary>GNTTABOP_copy ops: shared page [first + i] (source gref) to a fresh dom0 RAM page (local GFN).</summary>
    public GnttabCopy[] CopyOps(int first, int count)
    {
        var dst = TakeDom0Ram(count);
        var ops = new GnttabCopy[count];
        for (int i = 0; i < count; i++)
        {
            ops[i] = new GnttabCopy
            {
                Source = new GnttabCopyPtr { RefOrGfn = Refs[first + i], Domain = DomU.Id },
                Dest = new GnttabCopyPtr { RefOrGfn = dst[i].Value, Domain = DomainId.Self },
                Len = MachineMemory.PageSize,
                Flags = GntCopy.source_gref,
            };
        }
        return ops;
    }

    /// <summary>Throws unless every op of a batch succeeded (checked after warm-up, outside timing).</summary>
    public static void CheckStatus(ReadOnlySpan<GnttabMapGrantRef> ops)
    {
        foreach (var op in ops) if (op.Status != GntSt.okay) throw new InvalidOperationException($"map failed: GNTST {op.Status}");
    }

    /// <summary>Throws unless every unmap op of a batch succeeded.</summary>
    public static void CheckStatus(ReadOnlySpan<GnttabUnmapGrantRef> ops)
    {
        foreach (var op in ops) if (op.Status != GntSt.okay) throw new InvalidOperationException($"unmap failed: GNTST {op.Status}");
    }

    /// <summary>Throws unless every copy op of a batch succeeded.</summary>
    public static void CheckStatus(ReadOnlySpan<GnttabCopy> ops)
    {
        foreach (var op in ops) if (op.Status != GntSt.okay) throw new InvalidOperationException($"copy failed: GNTST {op.Status}");
    }

    /// <summary>Prepares an IOCTL_GNTDEV_GRANT_COPY in dom0: opens gntdev, mmaps (anonymous) the segment
    /// array and <paramref name="count"/> destination pages, and fills one 4 KiB segment per shared page
    /// [first, first + count) (source gref, destination user address). Returns the 16-byte ioctl argument.</summary>
    public byte[] PrepareGrantCopyIoctl(int first, int count)
    {
        if (_gntDevFd >= 0) throw new InvalidOperationException("grant copy already prepared");
        _gntDevFd = Check(Dom0Process.Open("/dev/xen/gntdev", Posix.O_RDWR | Posix.O_CLOEXEC), "open gntdev");
        int segBytes = count * System.Runtime.CompilerServices.Unsafe.SizeOf<gntdev_grant_copy_segment>();
        long segPages = XenPage.PagesFor(segBytes);
        _copyMappingLength = (segPages + count) * XenPage.Size;
        _copyMapping = Dom0Process.Mmap(-1, 0, _copyMappingLength, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
        if (_copyMapping < 0) throw new InvalidOperationException($"anonymous mmap failed: {_copyMapping}");
        long dest = _copyMapping + segPages * XenPage.Size;
        var segs = MemoryMarshal.Cast<byte, gntdev_grant_copy_segment>(GuestMemory.AsSpan(_copyMapping, segBytes));
        for (int i = 0; i < count; i++)
        {
            segs[i] = default;
            segs[i].source.foreign = new gntdev_grant_copy_foreign { @ref = Refs[first + i], offset = 0, domid = DomU.Id.Value };
            segs[i].dest.virt = (ulong)(dest + (long)i * XenPage.Size);
            segs[i].len = XenPage.Size;
            segs[i].flags = GntCopy.source_gref;
        }
        var arg = new byte[System.Runtime.CompilerServices.Unsafe.SizeOf<ioctl_gntdev_grant_copy>()];
        MemoryMarshal.Write(arg, new ioctl_gntdev_grant_copy { count = (uint)count, segments = (ulong)_copyMapping });
        return arg;
    }

    /// <summary>Issues the prepared IOCTL_GNTDEV_GRANT_COPY once. Allocation-free.</summary>
    public int GrantCopyIoctl(Span<byte> arg) => Dom0Process.Ioctl(_gntDevFd, GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY, arg);

    /// <summary>Throws unless every segment of the prepared grant copy reports GNTST_okay.</summary>
    public void CheckGrantCopySegments(int count)
    {
        var segs = MemoryMarshal.Cast<byte, gntdev_grant_copy_segment>(GuestMemory.AsSpan(_copyMapping, count * System.Runtime.CompilerServices.Unsafe.SizeOf<gntdev_grant_copy_segment>()));
        foreach (var s in segs) if (s.status != GntSt.okay) throw new InvalidOperationException($"grant copy segment failed: GNTST {s.status}");
    }

    /// <summary>Returns everything and destroys the host.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        try
        {
            if (_gntDevMapping > 0) Dom0Process.Munmap(_gntDevMapping, (long)_gntDevMapCount * XenPage.Size);
            if (_gntDevMapFd >= 0)
            {
                var unmap = new ioctl_gntdev_unmap_grant_ref { index = _gntDevMapIndex, count = (uint)_gntDevMapCount };
                Dom0Process.Ioctl(_gntDevMapFd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, MemoryMarshal.AsBytes(new Span<ioctl_gntdev_unmap_grant_ref>(ref unmap)));
                Dom0Process.Close(_gntDevMapFd);
            }
            if (_copyMapping > 0) Dom0Process.Munmap(_copyMapping, _copyMappingLength);
            if (_gntDevFd >= 0) Dom0Process.Close(_gntDevFd);
            foreach (var g in _dom0Unpopulated) Host.Dom0.Kernel.FreePage(g);
            foreach (var g in _dom0Ram) Host.Dom0.Kernel.FreePage(g);
            var dealloc = new ioctl_gntalloc_dealloc_gref { index = _gntAllocIndex, count = (uint)Pages };
            DomUProcess.Ioctl(_gntAllocFd, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, MemoryMarshal.AsBytes(new Span<ioctl_gntalloc_dealloc_gref>(ref dealloc)));
            DomUProcess.Close(_gntAllocFd);
        }
        finally
        {
            Dom0Process.Dispose();
            DomUProcess.Dispose();
            Host.Dispose();
        }
    }

    /// <summary>Throws for a negative (-errno) result.</summary>
    public static int Check(long rc, string what) =>
        rc < 0 ? throw new InvalidOperationException($"{what} failed: {Errno.Name((int)-rc)}") : (int)rc;
}
