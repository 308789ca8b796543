using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Reliability;

/// <summary>
/// A structure-aware, mutation-based fuzzer of every ioctl decoder of the emulated drivers, driven
/// through <see cref="GuestProcess.Ioctl"/> and interleaved with open, dup, close, mmap, munmap, poll,
/// lseek and non-blocking read. Arguments are built from the ABI with fields drawn from a pool of values
/// seen so far (refs, indexes, fds, ports, domids) and limits (0, 1, limit, limit+1, huge), then mutated
/// (bit flips, random bytes, truncation, extension, odd lengths); requests are sometimes mutated too.
/// Every result must be a value &gt;= 0 or a spec errno; an exception escaping is a failure. Blocking
/// waits are clamped (EXP_WAIT_RELEASED to a few ms, reads only on O_NONBLOCK files).
/// </summary>
internal sealed class IoctlFuzzer
{
    private static readonly string[] Paths =
    [
        "/dev/xen/gntdev", "/dev/xen/gntalloc", "/dev/xen/evtchn", "/dev/dma_heap/system", "/dev/dma_heap/reserved", "/dev/xen/nope",
    ];

    private static readonly uint[] Requests =
    [
        GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, GntDevIoctl.IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR,
        GntDevIoctl.IOCTL_GNTDEV_SET_MAX_GRANTS, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY,
        GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED,
        GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE,
        GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
        EvtChnIoctl.IOCTL_EVTCHN_BIND_VIRQ, EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT,
        EvtChnIoctl.IOCTL_EVTCHN_UNBIND, EvtChnIoctl.IOCTL_EVTCHN_NOTIFY, EvtChnIoctl.IOCTL_EVTCHN_RESET, EvtChnIoctl.IOCTL_EVTCHN_RESTRICT_DOMID,
        DmaBufIoctl.DMA_BUF_IOCTL_SYNC, DmaBufIoctl.DMA_BUF_SET_NAME_A, DmaBufIoctl.DMA_BUF_SET_NAME_B,
        DmaBufIoctl.DMA_BUF_IOCTL_EXPORT_SYNC_FILE, DmaBufIoctl.DMA_BUF_IOCTL_IMPORT_SYNC_FILE, DmaHeapIoctl.DMA_HEAP_IOCTL_ALLOC,
    ];

    private readonly SmallWorld _w;
    private readonly Random _rng;
    private readonly List<uint> _refs = [8, 9, 10];
    private readonly List<ulong> _indexes = [0, 4096];
    private readonly List<uint> _ports = [1, 2];
    private readonly List<long> _addresses = [];
    private readonly List<(GuestProcess P, long Va, long Len)> _maps = [];
    private readonly Queue<string> _log = new();

    public IoctlFuzzer(SmallWorld world, int seed)
    {
        _w = world;
        _rng = new Random(seed);
    }

    public long Ioctls { get; private set; }
    public long Syscalls { get; private set; }
    public long Successes { get; private set; }

    /// <summary>The last operations, for a failure report.</summary>
    public string RecentLog => string.Join("\n    ", _log);

    private void Log(string s)
    {
        _log.Enqueue(s);
        if (_log.Count > 25) _log.Dequeue();
    }

    private GuestProcess Proc() => _w.Processes[_rng.Next(_w.Processes.Count)];

    private T Pick<T>(List<T> list, T fallback) => list.Count == 0 ? fallback : list[_rng.Next(list.Count)];

    private int Fd() => _rng.Next(10) switch
    {
        0 => -1,
        1 => _rng.Next(-5, SmallWorld.MaxFds + 5),
        2 => int.MaxValue,
        _ => _rng.Next(12),
    };

    private uint Count() => _rng.Next(12) switch
    {
        0 => 0,
        1 => SmallWorld.GntDevLimit,
        2 => SmallWorld.GntDevLimit + 1,
        3 => uint.MaxValue,
        4 => (uint)_rng.Next(1, 1 << 20),
        5 => 0x4000_0001,
        _ => (uint)_rng.Next(1, 6),
    };

    private ushort DomId() => _rng.Next(8) switch
    {
        0 => GrantTableConstants.DOMID_SELF,
        1 => (ushort)_rng.Next(ushort.MaxValue + 1),
        2 => 0xffff,
        _ => (ushort)_rng.Next(_w.Guests.Count + 1),
    };

    private uint Ref() => _rng.Next(6) switch
    {
        0 => (uint)_rng.Next(0, 8),
        1 => (uint)_rng.Next(),
        2 => 2048,   // one past two grant frames
        _ => Pick(_refs, 8u),
    };

    private List<uint> RefList(uint count)
    {
        int n = (int)Math.Min(count, 80u);
        var l = new List<uint>(n);
        for (int i = 0; i < n; i++) l.Add(Ref());
        return l;
    }

    private ulong Index() => _rng.Next(5) switch
    {
        0 => (ulong)_rng.NextInt64(),
        1 => Pick(_indexes, 0UL) + (ulong)_rng.Next(1, 4096),
        _ => Pick(_indexes, 0UL),
    };

    private long Address() => _rng.Next(4) switch
    {
        0 => _rng.NextInt64(),
        1 => 0,
        _ => Pick(_addresses, 4096L) + _rng.Next(-64, 4096 * 2),
    };

    private byte[] BuildArg(uint request)
    {
        var r = request;
        if (r == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS && _rng.Next(3) == 0)
        {
            // A plausible export: refs granted to the exporter's domain, as a real backend does.
            var refs = new List<uint>();
            for (int i = _rng.Next(1, 4); i > 0; i--) refs.Add(Pick(_refs, 8u));
            return Args.Export((uint)_rng.Next(0, 3), (ushort)_rng.Next(_w.Guests.Count), refs);
        }
        if (r == GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF)
        {
            uint c = Count();
            var a = Args.MapGrantRef(DomId(), RefList(c));
            MemoryMarshal.Write(a, c);
            return a;
        }
        if (r == GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF || r == GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF)
            return Args.U64U32U32(Index(), _rng.Next(3) == 0 ? Count() : (uint)_rng.Next(0, 4), 0);
        if (r == GntDevIoctl.IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR)
        {
            var a = new byte[24];
            MemoryMarshal.Write(a, Address());
            return a;
        }
        if (r == GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY || r == GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY)
            return Args.U64U32U32(Index() + (ulong)_rng.Next(0, 4096), (uint)_rng.Next(0, 5), _rng.Next(3) == 0 ? (uint)_rng.Next() : Pick(_ports, 1u));
        if (r == GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY) return GrantCopyArg();
        if (r == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS)
        {
            uint c = Count();
            var a = Args.Export((uint)_rng.Next(0, 8), DomId(), RefList(c));
            MemoryMarshal.Write(a.AsSpan(4), c);
            return a;
        }
        if (r == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED) return Args.Pair((uint)Fd(), (uint)_rng.Next(0, 3));
        if (r == GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS)
        {
            uint c = _rng.Next(3) == 0 ? Count() : (uint)_rng.Next(1, 5);
            var a = Args.Refs((uint)Fd(), c, DomId(), (uint)_rng.Next(), new uint[Math.Min(c, 80u)]);
            return a;
        }
        if (r == GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE) return Args.Pair((uint)Fd(), 0);
        if (r == GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF)
        {
            uint c = _rng.Next(3) == 0 ? Count() : (uint)_rng.Next(0, 5);
            var a = Args.AllocGref(DomId(), Math.Min(c, 100u), _rng.Next(2) == 0);
            MemoryMarshal.Write(a.AsSpan(4), c);
            return a;
        }
        if (r == EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN) return Args.Pair(DomId(), Pick(_ports, 1u));
        if (r == EvtChnIoctl.IOCTL_EVTCHN_BIND_VIRQ) return Args.Pair((uint)_rng.Next(0, 30), 0)[..4];
        if (r == EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT) return Args.Pair(DomId(), 0)[..4];
        if (r == EvtChnIoctl.IOCTL_EVTCHN_UNBIND || r == EvtChnIoctl.IOCTL_EVTCHN_NOTIFY)
            return Args.Pair(_rng.Next(4) == 0 ? (uint)_rng.Next() : Pick(_ports, 1u), 0)[..4];
        if (r == EvtChnIoctl.IOCTL_EVTCHN_RESTRICT_DOMID) return Args.Pair(DomId(), 0)[..2];
        if (r == DmaBufIoctl.DMA_BUF_IOCTL_SYNC) { var a = new byte[8]; MemoryMarshal.Write(a, (ulong)_rng.Next(0, 16)); return a; }
        if (r == DmaBufIoctl.DMA_BUF_SET_NAME_A || r == DmaBufIoctl.DMA_BUF_SET_NAME_B)
        {
            var a = new byte[8];
            MemoryMarshal.Write(a, Address());
            return a;
        }
        if (r == DmaHeapIoctl.DMA_HEAP_IOCTL_ALLOC)
            return Args.HeapAlloc(_rng.Next(4) == 0 ? (ulong)_rng.NextInt64() : (ulong)_rng.Next(0, 6 * 4096), _rng.Next(4) == 0 ? (uint)_rng.Next() : (uint)(Posix.O_RDWR | Posix.O_CLOEXEC));
        var raw = new byte[_rng.Next(0, 64)];
        _rng.NextBytes(raw);
        return raw;
    }

    /// <summary>A GRANT_COPY whose segment array lives in a real anonymous mapping of some process.</summary>
    private byte[] GrantCopyArg()
    {
        var a = new byte[16];
        uint count = _rng.Next(4) == 0 ? Count() : (uint)_rng.Next(0, 4);
        MemoryMarshal.Write(a, count);
        long segs = _addresses.Count > 0 && _rng.Next(4) != 0 ? Pick(_addresses, 0L) : Address();
        MemoryMarshal.Write(a.AsSpan(8), segs);
        return a;
    }

    /// <summary>Fills the process's anonymous mappings with segment-like data now and then.</summary>
    private unsafe void ScribbleSegments()
    {
        if (_maps.Count == 0) return;
        var (_, va, len) = _maps[_rng.Next(_maps.Count)];
        if (!_anon.Contains(va)) return;
        var span = new Span<byte>((void*)va, (int)Math.Min(len, 4096));
        for (int s = 0; s + 24 <= span.Length && s < 24 * 4; s += 24)
        {
            var seg = span.Slice(s, 24);
            bool srcG = _rng.Next(2) == 0, dstG = _rng.Next(2) == 0;
            if (srcG) { MemoryMarshal.Write(seg, Ref()); MemoryMarshal.Write(seg[4..], (ushort)_rng.Next(0, 4200)); MemoryMarshal.Write(seg[6..], DomId()); }
            else MemoryMarshal.Write(seg, Address());
            if (dstG) { MemoryMarshal.Write(seg[8..], Ref()); MemoryMarshal.Write(seg[12..], (ushort)_rng.Next(0, 4200)); MemoryMarshal.Write(seg[14..], DomId()); }
            else MemoryMarshal.Write(seg[8..], Address());
            MemoryMarshal.Write(seg[16..], (ushort)_rng.Next(0, 4200));
            MemoryMarshal.Write(seg[18..], (ushort)((srcG ? 1 : 0) | (dstG ? 2 : 0) | (_rng.Next(8) == 0 ? 4 : 0)));
        }
    }

    private readonly HashSet<long> _anon = [];

    private byte[] Mutate(byte[] a)
    {
        switch (_rng.Next(8))
        {
            case 0: if (a.Length > 0) a[_rng.Next(a.Length)] ^= (byte)(1 << _rng.Next(8)); return a;
            case 1: if (a.Length > 0) a[_rng.Next(a.Length)] = (byte)_rng.Next(256); return a;
            case 2: return a[.._rng.Next(0, a.Length + 1)];                          // short
            case 3: { var b = new byte[a.Length + _rng.Next(1, 9)]; a.CopyTo(b, 0); return b; }   // long, odd
            case 4: { var b = new byte[_rng.Next(0, 40)]; _rng.NextBytes(b); return b; }          // garbage
            default: return a;
        }
    }

    private uint MutateRequest(uint r) => _rng.Next(20) switch
    {
        0 => r ^ (1u << _rng.Next(32)),
        1 => (uint)_rng.Next(),
        2 => r & 0xffff,                                           // size field dropped
        _ => r,
    };

    /// <summary>Runs one random step. Returns a description of a violation, or null.</summary>
    public string? Step()
    {
        var p = Proc();
        int kind = _rng.Next(100);
        Syscalls++;
        long rc;
        string what;
        if (kind < 8)
        {
            string path = Paths[_rng.Next(Paths.Length)];
            int flags = Posix.O_RDWR | (_rng.Next(2) == 0 ? Posix.O_CLOEXEC : 0) | (_rng.Next(2) == 0 ? Posix.O_NONBLOCK : 0);
            what = $"{p.Description} open {path} 0x{flags:x}";
            rc = p.Open(path, flags);
        }
        else if (kind < 13) { int fd = Fd(); what = $"{p.Description} close {fd}"; rc = p.Close(fd); }
        else if (kind < 16) { int fd = Fd(); what = $"{p.Description} dup {fd}"; rc = p.Dup(fd); }
        else if (kind < 26) return MmapStep(p);
        else if (kind < 32)
        {
            if (_maps.Count == 0 || _rng.Next(8) == 0)
            {
                long a = Address(), l = _rng.Next(0, 5) * 4096L;
                what = $"{p.Description} munmap 0x{a:x} {l}";
                rc = p.Munmap(a, l);
            }
            else
            {
                int i = _rng.Next(_maps.Count);
                var (mp, va, len) = _maps[i];
                _maps.RemoveAt(i);
                _anon.Remove(va);
                what = $"{mp.Description} munmap 0x{va:x} {len}";
                rc = mp.Munmap(va, len);
                if (rc != 0) return $"{what} -> {rc}, expected 0";
                Log(what + " -> 0");
                return null;
            }
        }
        else if (kind < 35)
        {
            int fd = Fd();
            what = $"{p.Description} lseek {fd}";
            rc = p.Lseek(fd, _rng.Next(3) == 0 ? _rng.Next(-2, 2) : 0, _rng.Next(0, 4));
        }
        else if (kind < 38)
        {
            Span<PollFd> pfd = [new PollFd { Fd = Fd(), Events = Posix.POLLIN }];
            what = $"{p.Description} poll {pfd[0].Fd}";
            rc = p.Poll(pfd, 0);
        }
        else if (kind < 41)
        {
            int fd = Fd();
            var f = p.GetFile(fd);
            bool nonblock = f is null || (f.OpenFlags & Posix.O_NONBLOCK) != 0 || f.GetType().Name != "EvtChnFile";
            f?.Put();
            if (!nonblock) return null;   // a blocking evtchn read would wait for an event
            var buf = new byte[_rng.Next(0, 3) * 4 + _rng.Next(0, 2)];
            what = $"{p.Description} read {fd} {buf.Length}";
            rc = p.Read(fd, buf);
            if (_rng.Next(2) == 0) { what += " / write"; rc = Math.Min(rc, p.Write(fd, buf)); }
        }
        else if (kind < 43) { ScribbleSegments(); return null; }
        else return IoctlStep(p);
        Log($"{what} -> {rc}");
        if (rc < 0 && !Checks.SpecErrnos.Contains((int)-rc)) return $"{what} -> {rc}: not a spec errno";
        return null;
    }

    private string? MmapStep(GuestProcess p)
    {
        bool anon = _rng.Next(5) == 0;
        int fd = anon ? -1 : Fd();
        long off = _rng.Next(6) == 0 ? _rng.NextInt64() : (long)Index();
        long len = _rng.Next(8) == 0 ? _rng.NextInt64(-10, 1L << 40) : _rng.Next(1, 5) * 4096L - (_rng.Next(4) == 0 ? 100 : 0);
        int prot = _rng.Next(4) switch { 0 => Posix.PROT_READ, 1 => Posix.PROT_NONE, _ => Posix.PROT_READ | Posix.PROT_WRITE };
        int flags = _rng.Next(6) switch { 0 => Posix.MAP_PRIVATE, 1 => 0, 2 => Posix.MAP_SHARED | Posix.MAP_FIXED, _ => Posix.MAP_SHARED };
        if (anon) { flags = Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS; prot = Posix.PROT_READ | Posix.PROT_WRITE; off = 0; len = 4096 * _rng.Next(1, 3); }
        string what = $"{p.Description} mmap fd {fd} off 0x{off:x} len {len} prot {prot} flags 0x{flags:x}";
        long rc = p.Mmap(fd, off, len, prot, flags);
        Log($"{what} -> {(rc >= 0 ? $"0x{rc:x}" : rc.ToString(System.Globalization.CultureInfo.InvariantCulture))}");
        if (rc < 0) return Checks.SpecErrnos.Contains((int)-rc) ? null : $"{what} -> {rc}: not a spec errno";
        long real = (len + 4095) & ~4095L;
        _maps.Add((p, rc, real));
        _addresses.Add(rc);
        if (anon) _anon.Add(rc);
        if (_addresses.Count > 64) _addresses.RemoveAt(0);
        return null;
    }

    /// <summary>Most of the time an fd of the device the request belongs to, so inputs get past fget.</summary>
    private int FdFor(GuestProcess p, uint request)
    {
        if (_rng.Next(10) < 3) return Fd();
        string kind = ((request >> 8) & 0xff) switch
        {
            'E' => "EvtChnFile",
            'b' => "DmaBufFile",
            'H' => "HeapFile",
            _ => request == GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF || request == GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF || _rng.Next(2) == 0 && request == GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY ? "GntAllocFile" : "GntDevFile",
        };
        var fds = new List<int>();
        for (int fd = 0; fd < SmallWorld.MaxFds; fd++)
        {
            var f = p.GetFile(fd);
            if (f is null) continue;
            if (f.GetType().Name == kind) fds.Add(fd);
            f.Put();
        }
        return fds.Count == 0 ? Fd() : fds[_rng.Next(fds.Count)];
    }

    private string? IoctlStep(GuestProcess p)
    {
        uint request = Requests[_rng.Next(Requests.Length)];
        int fd = FdFor(p, request);
        var arg = BuildArg(request);
        if (_rng.Next(3) == 0) arg = Mutate(arg);
        uint sent = MutateRequest(request);
        // Never block: EXP_WAIT_RELEASED waits up to wait_to_ms.
        if (sent == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED && arg.Length >= 8 && MemoryMarshal.Read<uint>(arg.AsSpan(4)) > 2)
            MemoryMarshal.Write(arg.AsSpan(4), 2u);
        // Importing a gntdev export into gntdev was a reference cycle (finding R5, fixed, with its own
        // regression test); the fuzzer keeps to heap buffers and other files so its runs stay comparable.
        if (sent == GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS && arg.Length >= 4)
        {
            var b = DmaBufObject.Get(p, (int)MemoryMarshal.Read<uint>(arg), out _);
            bool export = b is not null && b.ExporterData is not GuestFrame[];
            b?.Put();
            if (export) return null;
        }
        string what = $"{p.Description} ioctl fd {fd} 0x{sent:x8} len {arg.Length} [{Convert.ToHexString(arg.AsSpan(0, Math.Min(arg.Length, 32)))}]";
        Ioctls++;
        int rc = p.Ioctl(fd, sent, arg);
        Log($"{what} -> {rc}");
        if (rc < 0) return Checks.SpecErrnos.Contains(-rc) ? null : $"{what} -> {rc}: not a spec errno";
        Successes++;
        Harvest(sent, arg, rc);
        return null;
    }

    /// <summary>Feeds results back into the value pools so later inputs reach deeper states.</summary>
    private void Harvest(uint request, byte[] arg, int rc)
    {
        if (request == GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF && arg.Length >= 16)
        {
            uint c = MemoryMarshal.Read<uint>(arg.AsSpan(4));
            _indexes.Add(MemoryMarshal.Read<ulong>(arg.AsSpan(8)));
            for (int i = 0; i < c && 16 + 4 * i + 4 <= arg.Length; i++) _refs.Add(MemoryMarshal.Read<uint>(arg.AsSpan(16 + 4 * i)));
        }
        else if (request == GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF && arg.Length >= 16) _indexes.Add(MemoryMarshal.Read<ulong>(arg.AsSpan(8)));
        else if (request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS && arg.Length >= 16)
        {
            uint c = MemoryMarshal.Read<uint>(arg.AsSpan(4));
            for (int i = 0; i < c && 16 + 4 * i + 4 <= arg.Length; i++) _refs.Add(MemoryMarshal.Read<uint>(arg.AsSpan(16 + 4 * i)));
        }
        else if (rc > 0 && (request == EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT || request == EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN || request == EvtChnIoctl.IOCTL_EVTCHN_BIND_VIRQ))
            _ports.Add((uint)rc);
        if (_refs.Count > 256) _refs.RemoveRange(0, 64);
        if (_indexes.Count > 128) _indexes.RemoveRange(0, 32);
        if (_ports.Count > 64) _ports.RemoveRange(0, 16);
    }
}
