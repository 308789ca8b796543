using System.Runtime.InteropServices;
using CsCheck;
using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;
using Xunit.Abstractions;

namespace XenShare.Tests.Reliability;

/// <summary>
/// Campaign 2: random sequences of grant, map+mmap, munmap, grant copy in both directions, export,
/// close, device attach + map attachment + DMA read, end access and domain destroy, by dom0 (two
/// processes), dom1 and dom2, checked after every step against a reference model of who may reach which
/// page (and what it must contain) and against the host invariants; a leak check after teardown.
/// CsCheck shrinks a failing sequence to a minimal one, printed with its seed.
/// </summary>
public sealed class ModelBasedTests(ITestOutputHelper output)
{
    public readonly record struct Op(int Kind, int A, int B, bool Flag)
    {
        public override string ToString() => $"{Names[Kind]}({A},{B},{Flag})";
    }

    private static readonly string[] Names = ["Grant", "Map", "Unmap", "CopyTo", "CopyFrom", "Export", "CloseExport", "AttachRead", "EndGrant", "DestroyGranter"];

    private static readonly Gen<Op[]> Sequences =
        Gen.Select(Gen.Int[0, 100], Gen.Int[0, 63], Gen.Int[0, 63], Gen.Bool, (k, a, b, f) => new Op(
            k < 16 ? 0 : k < 36 ? 1 : k < 46 ? 2 : k < 54 ? 3 : k < 62 ? 4 : k < 72 ? 5 : k < 80 ? 6 : k < 88 ? 7 : k < 97 ? 8 : 9, a, b, f))
        .Array[1, 40];

    private static long s_sequences, s_steps;

    [Fact]
    public void Model_RandomSequences_MatchReferenceModel_AndInvariants()
    {
        var time = Stress.Duration(5);
        string? seed = Environment.GetEnvironmentVariable("XENSHARE_MODEL_SEED");
        Sequences.Sample(ops => { using var run = new ModelRun(); run.Execute(ops); }, seed: seed, iter: 10_000_000, time: (int)time.TotalSeconds, threads: 2,
            print: ops => string.Join(" ", ops));
        Stress.Report(output, $"model: {Interlocked.Read(ref s_sequences)} sequences checked, {Interlocked.Read(ref s_steps)} steps, leaks 0");
    }

    private sealed class Grant
    {
        public required int Granter, Grantee;
        public required bool Writable;
        public required uint Ref;
        public int GaFd;
        public long GaVa;
        public ulong Index;
        public bool Ended, GranterDead, Reclaimed;
        public byte Content;
        public int Uses;   // live mappings and exports of this very grant
    }

    private sealed class Mapping
    {
        public required int Proc;
        public required Grant G;
        public long Va;
    }

    private sealed class ExportM
    {
        public required int Proc;
        public required Grant G;
        public int Fd;
        public int Gd;
    }

    private sealed class ModelRun : IDisposable
    {
        private readonly SmallWorld _w = new(guests: 2);
        private readonly List<Grant> _grants = [];
        private readonly Dictionary<(int, uint), Grant> _current = [];
        private readonly List<Mapping> _maps = [];
        private readonly List<ExportM> _exports = [];
        private readonly int[] _gntdev = [-1, -1, -1, -1];
        private readonly long[] _anon = [0, 0, 0, 0];
        private readonly bool[] _dead = new bool[3];
        private byte _token = 1;

        private static int DomOf(int proc) => proc == 3 ? 0 : proc;
        private GuestProcess P(int proc) => _w.Processes[proc];

        public void Execute(Op[] ops)
        {
            try
            {
                int i = 0;
                foreach (var op in ops)
                {
                    Step(op);
                    Checks.Invariants(_w.Xen, $"after op {i} {op}");
                    Checks.Isolated(_w.Host, $"after op {i} {op}");
                    CheckMappings($"after op {i} {op}");
                    i++;
                    Interlocked.Increment(ref s_steps);
                }
                _w.ExitAll();
                Checks.NoLeaks(_w.Host, "after teardown");
                Checks.Invariants(_w.Xen, "after teardown");
                Interlocked.Increment(ref s_sequences);
            }
            finally { _w.Dispose(); }
        }

        public void Dispose() => _w.Dispose();

        private unsafe void CheckMappings(string ctx)
        {
            foreach (var m in _maps)
                Assert.True(*(byte*)m.Va == m.G.Content, $"{ctx}: mapping of ref {m.G.Ref} shows {*(byte*)m.Va}, model {m.G.Content}");
            foreach (var g in _grants)
                if (!g.Ended && !g.GranterDead)
                    Assert.True(*(byte*)g.GaVa == g.Content, $"{ctx}: granter view of ref {g.Ref} shows {*(byte*)g.GaVa}, model {g.Content}");
        }

        private void Use(Grant g, int delta)
        {
            g.Uses += delta;
            MaybeReclaim(g);
        }

        private void MaybeReclaim(Grant g)
        {
            if (g.Reclaimed || g.Uses != 0 || !(g.Ended || g.GranterDead)) return;
            g.Reclaimed = true;
            if (_current.TryGetValue((g.Granter, g.Ref), out var c) && c == g) _current.Remove((g.Granter, g.Ref));
        }

        /// <summary>The model: may <paramref name="dom"/> reach the grant currently at (granter, ref)?</summary>
        private Grant? Reachable(Grant picked, int dom, bool write, bool copy = false)
        {
            if (!_current.TryGetValue((picked.Granter, picked.Ref), out var g)) return null;
            // GT11 as real Xen 4.17: a dead granter's grant stays reachable while something still pins its
            // page (a mapping or an export); once nothing does, its RAM is gone and so is the grant.
            // A copy with a dying granter's grant always fails (bad_page, or bad_domain for a held page).
            if ((g.GranterDead && (g.Uses == 0 || copy)) || g.Grantee != dom || (write && !g.Writable)) return null;
            return g;
        }

        private int Gntdev(int proc)
        {
            if (_gntdev[proc] < 0) _gntdev[proc] = P(proc).Open("/dev/xen/gntdev", Posix.O_RDWR);
            Assert.True(_gntdev[proc] >= 0);
            return _gntdev[proc];
        }

        private long Anon(int proc)
        {
            if (_anon[proc] == 0) _anon[proc] = P(proc).Mmap(-1, 0, 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
            Assert.True(_anon[proc] > 0);
            return _anon[proc];
        }

        private unsafe void Step(Op op)
        {
            switch (op.Kind)
            {
                case 0: // Grant: dom1/dom2 share one page with dom0/dom1/dom2
                {
                    int granter = 1 + op.A % 2, grantee = op.B % 3;
                    if (_dead[granter]) return;
                    var p = P(granter);
                    int ga = p.Open("/dev/xen/gntalloc", Posix.O_RDWR);
                    var arg = Args.AllocGref((ushort)_w.Guests[grantee].Id.Value, 1, op.Flag);
                    Assert.Equal(0, p.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg));
                    var g = new Grant { Granter = granter, Grantee = grantee, Writable = op.Flag, Ref = Args.AllocIds(arg, 1)[0], GaFd = ga, Index = MemoryMarshal.Read<ulong>(arg.AsSpan(8)) };
                    g.GaVa = p.Mmap(ga, (long)g.Index, 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
                    Assert.True(g.GaVa > 0);
                    g.Content = _token++;
                    *(byte*)g.GaVa = g.Content;
                    Assert.False(_current.ContainsKey((granter, g.Ref)), $"ref {g.Ref} of dom{granter} handed out while still granted");
                    _current[(granter, g.Ref)] = g;
                    _grants.Add(g);
                    return;
                }
                case 1: // Map + mmap (read-only or writable)
                {
                    if (_grants.Count == 0) return;
                    int proc = op.A % 4, dom = DomOf(proc);
                    if (_dead[dom]) return;
                    var picked = _grants[op.B % _grants.Count];
                    bool write = op.Flag;
                    var expect = Reachable(picked, dom, write);
                    int gd = Gntdev(proc);
                    var arg = Args.MapGrantRef((ushort)_w.Guests[picked.Granter].Id.Value, [picked.Ref]);
                    Assert.Equal(0, P(proc).Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg));
                    ulong index = MemoryMarshal.Read<ulong>(arg.AsSpan(8));
                    long va = P(proc).Mmap(gd, (long)index, 4096, Posix.PROT_READ | (write ? Posix.PROT_WRITE : 0), Posix.MAP_SHARED);
                    Assert.Equal(0, P(proc).Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, Args.U64U32U32(index, 1, 0)));
                    if (expect is null)
                    {
                        Assert.True(va == -Errno.EINVAL, $"dom{dom} mapped ref {picked.Ref} of dom{picked.Granter} (write {write}) against the model: {va}");
                        return;
                    }
                    Assert.True(va > 0, $"dom{dom} could not map ref {picked.Ref} of dom{picked.Granter} (write {write}): {va}");
                    Assert.Equal(expect.Content, *(byte*)va);
                    if (write)
                    {
                        expect.Content = _token++;
                        *(byte*)va = expect.Content;   // the granter sees it (checked after the step)
                    }
                    _maps.Add(new Mapping { Proc = proc, G = expect, Va = va });
                    Use(expect, +1);
                    return;
                }
                case 2: // munmap
                {
                    if (_maps.Count == 0) return;
                    var m = _maps[op.A % _maps.Count];
                    Assert.Equal(0, P(m.Proc).Munmap(m.Va, 4096));
                    _maps.Remove(m);
                    Use(m.G, -1);
                    return;
                }
                case 3: // GRANT_COPY local -> gref (write)
                case 4: // GRANT_COPY gref -> local (read)
                {
                    if (_grants.Count == 0) return;
                    int proc = op.A % 4, dom = DomOf(proc);
                    if (_dead[dom]) return;
                    var picked = _grants[op.B % _grants.Count];
                    bool toGrant = op.Kind == 3;
                    var expect = Reachable(picked, dom, toGrant, copy: true);
                    long local = Anon(proc);
                    byte token = _token++;
                    if (toGrant) *(byte*)local = token; else *(byte*)local = 0;
                    var seg = new byte[24];
                    var foreign = toGrant ? seg.AsSpan(8) : seg.AsSpan(0);
                    MemoryMarshal.Write(foreign, picked.Ref);
                    MemoryMarshal.Write(foreign[6..], (ushort)_w.Guests[picked.Granter].Id.Value);
                    MemoryMarshal.Write(toGrant ? seg.AsSpan(0) : seg.AsSpan(8), local + 100);
                    if (toGrant) *(byte*)(local + 100) = token;
                    MemoryMarshal.Write(seg.AsSpan(16), (ushort)1);
                    MemoryMarshal.Write(seg.AsSpan(18), (ushort)(toGrant ? GntCopy.dest_gref : GntCopy.source_gref));
                    // The segment array lives in user memory: put it in the anonymous page at 2048.
                    seg.CopyTo(new Span<byte>((void*)(local + 2048), 24));
                    var arg = new byte[16];
                    MemoryMarshal.Write(arg, 1u);
                    MemoryMarshal.Write(arg.AsSpan(8), local + 2048);
                    Assert.Equal(0, P(proc).Ioctl(Gntdev(proc), GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY, arg));
                    short status = MemoryMarshal.Read<short>(new ReadOnlySpan<byte>((void*)(local + 2048 + 20), 2));
                    if (expect is null)
                    {
                        Assert.True(status != GntSt.okay, $"dom{dom} copied {(toGrant ? "to" : "from")} ref {picked.Ref} of dom{picked.Granter} against the model");
                        return;
                    }
                    Assert.Equal(GntSt.okay, status);
                    if (toGrant) expect.Content = token;
                    else Assert.Equal(expect.Content, *(byte*)(local + 100));
                    return;
                }
                case 5: // export (always writable: EX05)
                {
                    if (_grants.Count == 0) return;
                    int proc = op.A % 4, dom = DomOf(proc);
                    if (_dead[dom]) return;
                    var picked = _grants[op.B % _grants.Count];
                    var expect = Reachable(picked, dom, write: true);
                    int gd = Gntdev(proc);
                    var arg = Args.Export(op.Flag ? GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT : 0, (ushort)_w.Guests[picked.Granter].Id.Value, [picked.Ref]);
                    int rc = P(proc).Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, arg);
                    if (expect is null) { Assert.True(rc == -Errno.EINVAL, $"dom{dom} exported ref {picked.Ref} against the model: {rc}"); return; }
                    Assert.True(rc == 0, $"dom{dom} could not export ref {picked.Ref}: {rc}");
                    _exports.Add(new ExportM { Proc = proc, G = expect, Fd = (int)MemoryMarshal.Read<uint>(arg.AsSpan(8)), Gd = gd });
                    Use(expect, +1);
                    return;
                }
                case 6: // close an export
                {
                    if (_exports.Count == 0) return;
                    var e = _exports[op.A % _exports.Count];
                    Assert.Equal(0, P(e.Proc).Close(e.Fd));
                    _exports.Remove(e);
                    Use(e.G, -1);
                    return;
                }
                case 7: // an in-kernel device attaches, maps the attachment and reads by DMA
                {
                    if (_exports.Count == 0) return;
                    var e = _exports[op.A % _exports.Count];
                    var p = P(e.Proc);
                    var buf = DmaBufObject.Get(p, e.Fd, out int errno);
                    Assert.True(buf is not null, $"dma_buf_get {errno}");
                    var dev = new DmaDevice(p.Kernel, "model", op.Flag ? DmaTranslation.Iommu : DmaTranslation.Direct);
                    var att = buf!.Attach(dev, out errno);
                    Assert.NotNull(att);
                    var t = buf.MapAttachment(att!, DmaDirection.ToDevice, out errno);
                    Assert.True(t is not null, $"map attachment {errno}");
                    var one = new byte[1];
                    Assert.Equal(0, dev.DmaRead(t!.Segments[0].DmaAddress, one));
                    Assert.Equal(e.G.Content, one[0]);
                    buf.UnmapAttachment(att!, t, DmaDirection.ToDevice);
                    buf.Detach(att!);
                    buf.Put();
                    Assert.Equal(0, dev.IommuMappedPages);
                    return;
                }
                case 8: // the granter ends the grant (dealloc + munmap + close)
                {
                    var live = _grants.Where(g => !g.Ended && !g.GranterDead).ToList();
                    if (live.Count == 0) return;
                    var g = live[op.A % live.Count];
                    var p = P(g.Granter);
                    Assert.Equal(0, p.Ioctl(g.GaFd, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Args.U64U32U32(g.Index, 1, 0)));
                    Assert.Equal(0, p.Munmap(g.GaVa, 4096));
                    Assert.Equal(0, p.Close(g.GaFd));
                    g.Ended = true;
                    MaybeReclaim(g);
                    return;
                }
                case 9: // destroy dom1 or dom2 (its process exits first)
                {
                    int d = 1 + op.A % 2;
                    if (_dead[d]) return;
                    _dead[d] = true;
                    P(d).Dispose();
                    foreach (var m in _maps.Where(m => m.Proc == d).ToList()) { _maps.Remove(m); Use(m.G, -1); }
                    foreach (var e in _exports.Where(e => e.Proc == d).ToList()) { _exports.Remove(e); Use(e.G, -1); }
                    _w.Host.DestroyGuest(_w.Guests[d]);
                    foreach (var g in _grants.Where(g => g.Granter == d)) { g.GranterDead = true; MaybeReclaim(g); }
                    return;
                }
            }
        }
    }
}
