using System.Runtime.InteropServices;
using CsCheck;
using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.DmaBuf;
using Xunit.Abstractions;

namespace XenShare.Tests.Reliability;

/// <summary>
/// Campaign 2b, across two domains: dom0 (the owner) shares pages with gntalloc (to itself or to the
/// peer), exports its self-granted pages as dma-bufs (flags 0, WC, COHERENT), allocates heap buffers,
/// imports buffers to refs for the peer, closes buffer fds, releases imports, ends its grants, writes,
/// and reuses memory (anonymous pages filled with a secret byte); dom1 (the peer) maps, holds, writes
/// and unmaps what it was granted, at random. After every step every peer mapping must show exactly what
/// the model says the page holds - never the owner's reused memory - and every live owner view too; the
/// host invariants must hold and the isolation monitor must have found nothing (EI09, D02, GA02, GT10).
/// CsCheck shrinks a failing sequence and prints it with its seed.
/// </summary>
public sealed class CrossDomainModelTests(ITestOutputHelper output)
{
    public readonly record struct Op(int Kind, int A, int B, bool Flag)
    {
        public override string ToString() => $"{Names[Kind]}({A},{B},{Flag})";
    }

    private static readonly string[] Names =
        ["Share", "Export", "Heap", "Import", "CloseBuffer", "ImpRelease", "EndShare", "OwnerWrite", "Reuse", "FreeReuse", "PeerMap", "PeerUnmap", "PeerWrite"];

    // Weights out of 100, in the order of Names.
    private static readonly int[] Weights = [9, 9, 5, 12, 8, 8, 8, 5, 8, 4, 14, 6, 4];

    private static readonly Gen<Op[]> Sequences =
        Gen.Select(Gen.Int[0, 99], Gen.Int[0, 63], Gen.Int[0, 63], Gen.Bool, (k, a, b, f) => new Op(KindOf(k), a, b, f)).Array[1, 50];

    private static int KindOf(int roll)
    {
        for (int i = 0; i < Weights.Length; i++)
        {
            if (roll < Weights[i]) return i;
            roll -= Weights[i];
        }
        return Weights.Length - 1;
    }

    private static long s_sequences, s_steps, s_peerReads;

    [Fact]
    public void CrossDomainModel_PeerNeverReadsReusedMemory_InvariantsAndIsolationHold()
    {
        var time = Stress.Duration(5);
        string? seed = Environment.GetEnvironmentVariable("XENSHARE_MODEL_SEED");
        Sequences.Sample(ops => { using var run = new Run(); run.Execute(ops); }, seed: seed, iter: 10_000_000, time: (int)time.TotalSeconds, threads: 2,
            print: ops => string.Join(" ", ops));
        Stress.Report(output, $"cross-domain model: {Interlocked.Read(ref s_sequences)} sequences, {Interlocked.Read(ref s_steps)} steps, " +
            $"{Interlocked.Read(ref s_peerReads)} peer reads, no reused memory read, hazards 0, leaks 0");
    }

    /// <summary>The campaign is sharp enough: with gntdev's old synchronous unmap switched back on, the
    /// sequence of the reported bug fails it - the isolation monitor reports the owner's free of a page the
    /// peer maps at the step that frees it, before any reuse could show it.</summary>
    [Fact]
    public void CrossDomainModel_CatchesTheReusedMemoryBug_WithTheOldSynchronousUnmap()
    {
        Op[] bug =
        [
            new(0, 3, 0, false),   // Share: 1 page granted to the owner itself
            new(1, 0, 1, false),   // Export it (WC)
            new(3, 0, 0, false),   // Import the export for the peer
            new(10, 0, 0, true),   // the peer maps the imported ref
            new(4, 0, 0, false),   // the owner closes the export fd
            new(5, 0, 0, false),   // IMP_RELEASE: 0, deferred
            new(6, 0, 0, false),   // the owner ends its share (gntalloc closed)
            new(8, 0, 0, false),   // the owner reuses memory
        ];
        using (var ok = new Run()) ok.Execute(bug);   // as Linux: passes
        var e = Assert.ThrowsAny<Exception>(() => { using var run = new Run(synchronousGntDevUnmap: true); run.Execute(bug); });
        Assert.Contains("isolation after op 6", e.Message, StringComparison.Ordinal);
        Assert.Contains("FreedWhileMapped", e.Message, StringComparison.Ordinal);
        Assert.Contains("dom1 maps ref", e.Message, StringComparison.Ordinal);
    }

    private const byte SecretByte = 0xEE;
    private const int ReusePages = 32;

    /// <summary>A page of the owner as the model sees it: the token at its first and last byte.</summary>
    private sealed class PageM
    {
        public byte Token;
        public long OwnerVa;   // the owner's live view (gntalloc mmap), 0 once gone
    }

    private sealed class ShareM
    {
        public required int Fd;
        public required ulong Index;
        public required long Va;
        public required uint[] Refs;
        public required PageM[] Pages;
        public required bool ToPeer;
        public bool Ended;
    }

    private sealed class BufferM
    {
        public required int Fd;
        public required PageM[] Pages;
        public bool Closed;
    }

    private sealed class ImportM
    {
        public required BufferM Buffer;
        public required uint[] Refs;
        public bool Released;
    }

    private sealed class PeerMapM
    {
        public required PageM Page;
        public required long Va;
        public required bool Writable;
    }

    private sealed unsafe class Run : IDisposable
    {
        private readonly SmallWorld _w;
        private readonly List<ShareM> _shares = [];
        private readonly List<BufferM> _buffers = [];
        private readonly List<ImportM> _imports = [];
        private readonly List<PeerMapM> _peerMaps = [];
        private readonly List<long> _reuse = [];
        private int _ownerGd = -1, _peerGd = -1;
        private byte _token = 1;

        public Run(bool synchronousGntDevUnmap = false) => _w = new SmallWorld(guests: 1, synchronousGntDevUnmap: synchronousGntDevUnmap);

        private GuestProcess Owner => _w.Processes[0];
        private GuestProcess Peer => _w.Processes[1];
        private ushort OwnerId => _w.Guests[0].Id.Value;
        private ushort PeerId => _w.Guests[1].Id.Value;

        private byte NextToken()
        {
            byte t = _token;
            _token = (byte)(_token % 200 + 1);   // 1..200: never 0 (fresh pages) nor the secret
            return t;
        }

        private static void Stamp(long va, byte token)
        {
            *(byte*)va = token;
            *(byte*)(va + 4095) = token;
        }

        private int OwnerGd() => _ownerGd >= 0 ? _ownerGd : _ownerGd = Ok(Owner.Open("/dev/xen/gntdev", Posix.O_RDWR), "owner gntdev");

        private int PeerGd() => _peerGd >= 0 ? _peerGd : _peerGd = Ok(Peer.Open("/dev/xen/gntdev", Posix.O_RDWR), "peer gntdev");

        private static int Ok(int rc, string what)
        {
            Assert.True(rc >= 0, $"{what}: {rc}");
            return rc;
        }

        public void Execute(Op[] ops)
        {
            try
            {
                int i = 0;
                foreach (var op in ops)
                {
                    Step(op);
                    string ctx = $"after op {i} {op}";
                    CheckViews(ctx);
                    Checks.Invariants(_w.Xen, ctx);
                    Checks.Isolated(_w.Host, ctx);
                    i++;
                    Interlocked.Increment(ref s_steps);
                }
                // Reuse as much memory as the owner can get, then look once more through every peer mapping.
                while (_reuse.Count < 12 && Reuse()) { }
                CheckViews("after the final reuse");
                _w.ExitAll();
                Checks.NoLeaks(_w.Host, "after teardown");
                Checks.Invariants(_w.Xen, "after teardown");
                Interlocked.Increment(ref s_sequences);
            }
            finally { _w.Dispose(); }
        }

        public void Dispose() => _w.Dispose();

        private void CheckViews(string ctx)
        {
            foreach (var m in _peerMaps)
            {
                byte first = *(byte*)m.Va, last = *(byte*)(m.Va + 4095);
                Assert.False(first == SecretByte || last == SecretByte, $"{ctx}: the peer reads the owner's reused memory");
                Assert.True(first == m.Page.Token && last == m.Page.Token, $"{ctx}: peer mapping shows {first}/{last}, model {m.Page.Token}");
                Interlocked.Increment(ref s_peerReads);
            }
            foreach (var s in _shares)
                foreach (var p in s.Pages)
                    if (p.OwnerVa != 0)
                        Assert.True(*(byte*)p.OwnerVa == p.Token, $"{ctx}: owner view shows {*(byte*)p.OwnerVa}, model {p.Token}");
        }

        private bool Reuse()
        {
            long va = Owner.Mmap(-1, 0, ReusePages * 4096L, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
            if (va == -Errno.ENOMEM) return false;
            Assert.True(va > 0, $"reuse mmap {va}");
            new Span<byte>((void*)va, ReusePages * 4096).Fill(SecretByte);
            _reuse.Add(va);
            return true;
        }

        private void Step(Op op)
        {
            switch (op.Kind)
            {
                case 0: // Share: gntalloc pages granted to the owner itself or to the peer, writable
                {
                    int n = op.A % 3 + 1;
                    int ga = Ok(Owner.Open("/dev/xen/gntalloc", Posix.O_RDWR), "open gntalloc");
                    var arg = Args.AllocGref(op.Flag ? PeerId : OwnerId, (uint)n, writable: true);
                    int rc = Owner.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg);
                    if (rc == -Errno.ENOSPC || rc == -Errno.ENOMEM) { Owner.Close(ga); return; }
                    Ok(rc, "ALLOC_GREF");
                    ulong index = MemoryMarshal.Read<ulong>(arg.AsSpan(8));
                    long va = Owner.Mmap(ga, (long)index, n * 4096L, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
                    Assert.True(va > 0, $"mmap gntalloc {va}");
                    var pages = new PageM[n];
                    for (int i = 0; i < n; i++)
                    {
                        pages[i] = new PageM { Token = NextToken(), OwnerVa = va + i * 4096L };
                        Stamp(pages[i].OwnerVa, pages[i].Token);
                    }
                    _shares.Add(new ShareM { Fd = ga, Index = index, Va = va, Refs = Args.AllocIds(arg, n), Pages = pages, ToPeer = op.Flag });
                    return;
                }
                case 1: // Export a self-granted share (flags 0, WC or COHERENT)
                {
                    var live = _shares.Where(s => !s.Ended && !s.ToPeer).ToList();
                    if (live.Count == 0) return;
                    var s = live[op.A % live.Count];
                    uint flags = (op.B % 3) switch { 0 => 0u, 1 => GntDevIoctl.GNTDEV_DMA_FLAG_WC, _ => GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT };
                    var arg = Args.Export(flags, OwnerId, s.Refs);
                    int rc = Owner.Ioctl(OwnerGd(), GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, arg);
                    if (rc == -Errno.ENOMEM || rc == -Errno.EMFILE) return;
                    Ok(rc, $"EXP_FROM_REFS flags {flags}");
                    _buffers.Add(new BufferM { Fd = (int)MemoryMarshal.Read<uint>(arg.AsSpan(8)), Pages = s.Pages });
                    return;
                }
                case 2: // Heap: a system-heap buffer with a token per page (written once through an mmap)
                {
                    int n = op.A % 3 + 1;
                    int fd = SystemHeap.Allocate(Owner, n, contiguous: op.Flag);
                    if (fd == -Errno.ENOMEM || fd == -Errno.EMFILE) return;
                    Ok(fd, "heap alloc");
                    long va = Owner.Mmap(fd, 0, n * 4096L, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
                    Assert.True(va > 0, $"heap mmap {va}");
                    var pages = new PageM[n];
                    for (int i = 0; i < n; i++)
                    {
                        pages[i] = new PageM { Token = NextToken() };
                        Stamp(va + i * 4096L, pages[i].Token);
                    }
                    Assert.Equal(0, Owner.Munmap(va, n * 4096L));
                    _buffers.Add(new BufferM { Fd = fd, Pages = pages });
                    return;
                }
                case 3: // Import an open buffer to refs for the peer
                {
                    var open = _buffers.Where(b => !b.Closed).ToList();
                    if (open.Count == 0) return;
                    var b = open[op.A % open.Count];
                    var arg = Args.Import(b.Fd, b.Pages.Length, PeerId);
                    int rc = Owner.Ioctl(OwnerGd(), GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, arg);
                    if (rc == -Errno.ENOSPC) return;
                    Ok(rc, "IMP_TO_REFS");
                    _imports.Add(new ImportM { Buffer = b, Refs = MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16, 4 * b.Pages.Length)).ToArray() });
                    return;
                }
                case 4: // Close a buffer's fd (imports keep the buffer alive, EI07)
                {
                    var open = _buffers.Where(b => !b.Closed).ToList();
                    if (open.Count == 0) return;
                    var b = open[op.A % open.Count];
                    Assert.Equal(0, Owner.Close(b.Fd));
                    b.Closed = true;
                    return;
                }
                case 5: // IMP_RELEASE by number: releases the newest import under that number (EI08)
                {
                    var live = _imports.Where(i => !i.Released).ToList();
                    if (live.Count == 0) return;
                    int key = live[op.A % live.Count].Buffer.Fd;
                    var newest = live.Last(i => i.Buffer.Fd == key);
                    Assert.Equal(0, Owner.Ioctl(OwnerGd(), GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE, Args.Pair((uint)key, 0)));
                    newest.Released = true;   // 0 even while the peer maps it (EI09): its pages must stay
                    return;
                }
                case 6: // End a share: DEALLOC_GREF + munmap + close (the owner lets go of its pages)
                {
                    var live = _shares.Where(s => !s.Ended).ToList();
                    if (live.Count == 0) return;
                    var s = live[op.A % live.Count];
                    Assert.Equal(0, Owner.Ioctl(s.Fd, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Args.U64U32U32(s.Index, (uint)s.Refs.Length, 0)));
                    Assert.Equal(0, Owner.Munmap(s.Va, s.Refs.Length * 4096L));
                    Assert.Equal(0, Owner.Close(s.Fd));
                    s.Ended = true;
                    foreach (var p in s.Pages) p.OwnerVa = 0;
                    return;
                }
                case 7: // The owner writes a new token through its live view
                {
                    var live = _shares.Where(s => !s.Ended).ToList();
                    if (live.Count == 0) return;
                    var s = live[op.A % live.Count];
                    var p = s.Pages[op.B % s.Pages.Length];
                    p.Token = NextToken();
                    Stamp(p.OwnerVa, p.Token);
                    return;
                }
                case 8: // The owner reuses memory: fresh anonymous pages full of the secret
                {
                    if (_reuse.Count < 12) Reuse();
                    return;
                }
                case 9: // ... and lets some of it go again
                {
                    if (_reuse.Count == 0) return;
                    long va = _reuse[op.A % _reuse.Count];
                    Assert.Equal(0, Owner.Munmap(va, ReusePages * 4096L));
                    _reuse.Remove(va);
                    return;
                }
                case 10: // The peer maps one page it was granted: a live import's ref or a share to the peer
                {
                    var sources = new List<(uint Ref, PageM Page)>();
                    foreach (var i in _imports.Where(i => !i.Released))
                        for (int k = 0; k < i.Refs.Length; k++) sources.Add((i.Refs[k], i.Buffer.Pages[k]));
                    foreach (var s in _shares.Where(s => s.ToPeer && !s.Ended))
                        for (int k = 0; k < s.Refs.Length; k++) sources.Add((s.Refs[k], s.Pages[k]));
                    if (sources.Count == 0) return;
                    var (gref, page) = sources[op.A % sources.Count];
                    int gd = PeerGd();
                    var arg = Args.MapGrantRef(OwnerId, [gref]);
                    Ok(Peer.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg), "peer MAP_GRANT_REF");
                    ulong index = MemoryMarshal.Read<ulong>(arg.AsSpan(8));
                    long va = Peer.Mmap(gd, (long)index, 4096, Posix.PROT_READ | (op.Flag ? Posix.PROT_WRITE : 0), Posix.MAP_SHARED);
                    Assert.Equal(0, Peer.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, Args.U64U32U32(index, 1, 0)));
                    Assert.True(va > 0, $"the peer could not map ref {gref} it was granted: {va}");
                    _peerMaps.Add(new PeerMapM { Page = page, Va = va, Writable = op.Flag });
                    return;
                }
                case 11: // The peer unmaps
                {
                    if (_peerMaps.Count == 0) return;
                    var m = _peerMaps[op.A % _peerMaps.Count];
                    Assert.Equal(0, Peer.Munmap(m.Va, 4096));
                    _peerMaps.Remove(m);
                    return;
                }
                case 12: // The peer writes through a writable mapping (the owner's live view sees it)
                {
                    var rw = _peerMaps.Where(m => m.Writable).ToList();
                    if (rw.Count == 0) return;
                    var m = rw[op.A % rw.Count];
                    m.Page.Token = NextToken();
                    Stamp(m.Va, m.Page.Token);
                    return;
                }
            }
        }
    }
}
