using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.DmaBuf;
using Xunit.Abstractions;

namespace XenShare.Tests.Reliability;

/// <summary>
/// Campaign 5: many threads on one host run mixed workloads for a bounded time (3 s in CI, long with
/// XENSHARE_STRESS=1): map/mmap/munmap, grant copy, gntalloc churn, export + wait on another thread
/// (a lost wake-up is a wait that times out), export closed while another thread imports it, heap
/// import/release, event channels. Any exception (a double free throws in the allocators and refcounts)
/// fails the run; a watchdog fails it with each worker's current operation if progress stops; at the end
/// every process exits and the host must be leak-free with its invariants intact.
/// </summary>
public sealed class RaceLoadTests(ITestOutputHelper output)
{
    [Fact]
    public void Race_MixedWorkloads_NoLostWakeups_NoDoubleFrees_NoLeaks_NoDeadlock()
    {
        var duration = Stress.Duration(3);
        using var w = new SmallWorld(guests: 2);
        // Grants used by the readers: dom1 shares 4 writable pages with dom0, kept for the whole run.
        var sharer = w.Processes[1];
        int ga = sharer.Open("/dev/xen/gntalloc", Posix.O_RDWR);
        var arg = Args.AllocGref(0, 4, true);
        Assert.Equal(0, sharer.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg));
        uint[] refs = Args.AllocIds(arg, 4);
        var dom1 = w.Guests[1].Id.Value;
        var extra = Enumerable.Range(0, 4).Select(_ => w.Guests[0].StartProcess()).ToList();
        var procs = new[] { w.Processes[0], w.Processes[3], extra[0], extra[1], extra[2], extra[3] };
        var keys = new BlockingCollection<(GuestProcess P, int Gd, int Fd)>(64);
        var exportFds = new ConcurrentQueue<(GuestProcess P, int Fd)>();
        long lostWakeups = 0, ops = 0, waits = 0;
        (GuestProcess P, int Gd) exporterGd = default;
        var errors = new ConcurrentQueue<string>();
        var sw = Stopwatch.StartNew();
        const int Workers = 7;
        var dog = new Watchdog(Workers, TimeSpan.FromSeconds(30));
        var threads = new List<Thread>();
        var kinds = new Action<int, GuestProcess>[]
        {
            // 0: map + mmap + read + munmap churn
            (id, p) =>
            {
                int gd = p.Open("/dev/xen/gntdev", Posix.O_RDWR);
                while (sw.Elapsed < duration)
                {
                    dog.Enter(id, "map+mmap");
                    var a = Args.MapGrantRef(dom1, refs);
                    Check(p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, a) == 0, "map");
                    ulong idx = MemoryMarshal.Read<ulong>(a.AsSpan(8));
                    long va = p.Mmap(gd, (long)idx, 4 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
                    Check(va > 0, $"mmap {va}");
                    dog.Enter(id, "unmap");
                    Check(p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, Args.U64U32U32(idx, 4, 0)) == 0, "unmap ioctl");
                    if (va > 0) Check(p.Munmap(va, 4 * 4096) == 0, "munmap");
                    Interlocked.Increment(ref ops);
                }
                p.Close(gd);
            },
            // 1: export, hand the key to the waiter, close after a moment
            (id, p) =>
            {
                int gd = p.Open("/dev/xen/gntdev", Posix.O_RDWR);
                var rng = new Random(id);
                while (sw.Elapsed < duration)
                {
                    dog.Enter(id, "export");
                    var a = Args.Export((uint)rng.Next(0, 3), dom1, refs.Take(rng.Next(1, 5)).ToArray());
                    int rc = p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, a);
                    if (rc == -Errno.ENOMEM || rc == -Errno.EMFILE) continue;
                    Check(rc == 0, $"export {rc}");
                    int fd = (int)MemoryMarshal.Read<uint>(a.AsSpan(8));
                    if (rng.Next(2) == 0) { dog.Enter(id, "hand to waiter"); keys.TryAdd((p, gd, fd), 1000); }
                    else exportFds.Enqueue((p, fd));
                    for (int s = rng.Next(200); s > 0; s--) Thread.SpinWait(10);
                    dog.Enter(id, "close export");
                    p.Close(fd);   // may already be closed by the importer worker's race: EBADF is fine
                    Interlocked.Increment(ref ops);
                }
                dog.Enter(id, "drain");
                keys.CompleteAdding();
                exporterGd = (p, gd);   // closed after the waiter has drained every key
            },
            // 2: the waiter (EW04: no lost wake-up)
            (id, _) =>
            {
                foreach (var (p, gd, fd) in keys.GetConsumingEnumerable())
                {
                    dog.Enter(id, $"wait fd {fd}");
                    int rc = p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, Args.Pair((uint)fd, 20_000));
                    if (rc == -Errno.ETIMEDOUT) Interlocked.Increment(ref lostWakeups);
                    else Check(rc == 0 || rc == -Errno.ENOENT, $"wait {rc}");
                    Interlocked.Increment(ref waits);
                }
            },
            // 3: import exports of another thread while they are being closed (fget vs close)
            (id, p) =>
            {
                int gd = p.Open("/dev/xen/gntdev", Posix.O_RDWR);
                while (sw.Elapsed < duration)
                {
                    if (!exportFds.TryDequeue(out var e)) { dog.Enter(id, "idle"); Thread.Yield(); continue; }
                    dog.Enter(id, "import foreign export");
                    var buf = DmaBufObject.Get(e.P, e.Fd, out int errno);
                    if (buf is null) { Check(errno == -Errno.EBADF || errno == -Errno.EINVAL, $"get {errno}"); continue; }
                    int fd = buf.InstallFd(p);
                    if (fd < 0) { buf.Put(); continue; }
                    int rc = p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, Args.Import(fd, (int)(buf.Size / 4096), 2));
                    Check(rc == 0 || rc == -Errno.ENOSPC, $"import {rc}");
                    e.P.Close(e.Fd);
                    p.Close(fd);
                    if (rc == 0) Check(p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE, Args.Pair((uint)fd, 0)) == 0, "imp release");
                    Interlocked.Increment(ref ops);
                }
                p.Close(gd);
            },
            // 4: grant copy to and from the shared pages
            (id, p) =>
            {
                int gd = p.Open("/dev/xen/gntdev", Posix.O_RDWR);
                long local = p.Mmap(-1, 0, 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
                var rng = new Random(id);
                while (sw.Elapsed < duration)
                {
                    dog.Enter(id, "grant copy");
                    var seg = new byte[24];
                    bool to = rng.Next(2) == 0;
                    MemoryMarshal.Write(to ? seg.AsSpan(8) : seg.AsSpan(0), refs[rng.Next(4)]);
                    MemoryMarshal.Write((to ? seg.AsSpan(8) : seg.AsSpan(0))[6..], dom1);
                    MemoryMarshal.Write(to ? seg.AsSpan(0) : seg.AsSpan(8), local + 512);
                    MemoryMarshal.Write(seg.AsSpan(16), (ushort)256);
                    MemoryMarshal.Write(seg.AsSpan(18), (ushort)(to ? GntCopy.dest_gref : GntCopy.source_gref));
                    unsafe { seg.CopyTo(new Span<byte>((void*)(local + 2048), 24)); }
                    var a = new byte[16];
                    MemoryMarshal.Write(a, 1u);
                    MemoryMarshal.Write(a.AsSpan(8), local + 2048);
                    Check(p.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY, a) == 0, "copy");
                    Interlocked.Increment(ref ops);
                }
                p.Munmap(local, 4096);
                p.Close(gd);
            },
            // 5: gntalloc churn in dom2 with dom0 mapping each page once
            (id, _) =>
            {
                var g = w.Processes[2];
                var m = extra[3];
                int ga2 = g.Open("/dev/xen/gntalloc", Posix.O_RDWR);
                int gd = m.Open("/dev/xen/gntdev", Posix.O_RDWR);
                while (sw.Elapsed < duration)
                {
                    dog.Enter(id, "alloc gref");
                    var a = Args.AllocGref(0, 2, true);
                    int rc = g.Ioctl(ga2, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, a);
                    if (rc == -Errno.ENOSPC || rc == -Errno.ENOMEM) continue;
                    Check(rc == 0, $"alloc {rc}");
                    var r = Args.AllocIds(a, 2);
                    var ma = Args.MapGrantRef(w.Guests[2].Id.Value, r);
                    Check(m.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, ma) == 0, "map");
                    ulong idx = MemoryMarshal.Read<ulong>(ma.AsSpan(8));
                    long va = m.Mmap(gd, (long)idx, 2 * 4096, Posix.PROT_READ, Posix.MAP_SHARED);
                    dog.Enter(id, "dealloc while mapped");
                    Check(g.Ioctl(ga2, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Args.U64U32U32(MemoryMarshal.Read<ulong>(a.AsSpan(8)), 2, 0)) == 0, "dealloc");
                    m.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, Args.U64U32U32(idx, 2, 0));
                    if (va > 0) m.Munmap(va, 2 * 4096);   // deferred reclaim completes here
                    Interlocked.Increment(ref ops);
                }
                g.Close(ga2);
                m.Close(gd);
            },
            // 6: event channels: bind a pair, notify, poll, unbind
            (id, p) =>
            {
                var peer = w.Processes[2];
                while (sw.Elapsed < duration)
                {
                    dog.Enter(id, "evtchn");
                    int e0 = p.Open("/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
                    int e2 = peer.Open("/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
                    int port = p.Ioctl(e0, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Args.Pair(w.Guests[2].Id.Value, 0).AsSpan(0, 4));
                    Check(port > 0, $"bind unbound {port}");
                    int rport = peer.Ioctl(e2, EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, Args.Pair(0, (uint)port));
                    Check(rport > 0, $"bind interdomain {rport}");
                    Check(peer.Ioctl(e2, EvtChnIoctl.IOCTL_EVTCHN_NOTIFY, Args.Pair((uint)rport, 0).AsSpan(0, 4)) == 0, "notify");
                    Span<PollFd> pfd = [new PollFd { Fd = e0, Events = Posix.POLLIN }];
                    Check(p.Poll(pfd, 20_000) == 1, "lost event");
                    var buf = new byte[4];
                    Check(p.Read(e0, buf) == 4 && MemoryMarshal.Read<uint>(buf) == (uint)port, "read port");
                    p.Close(e0);
                    peer.Close(e2);
                    Interlocked.Increment(ref ops);
                }
            },
        };
        void Check(bool ok, string what)
        {
            if (!ok) errors.Enqueue(what);
        }
        for (int i = 0; i < Workers; i++)
        {
            int id = i;
            var p = procs[Math.Min(i, procs.Length - 1)];
            var t = new Thread(() =>
            {
                try { kinds[id](id, p); }
                catch (Exception e) { errors.Enqueue($"worker {id}: {e}"); if (id == 1) keys.CompleteAdding(); }
            }) { IsBackground = true, Name = $"race worker {id}" };
            dog.Register(id, t);
            threads.Add(t);
            t.Start();
        }
        string? stall = dog.Join(() => threads.All(t => !t.IsAlive), duration + TimeSpan.FromSeconds(120));
        Assert.True(stall is null, stall);
        Assert.True(errors.IsEmpty, string.Join("\n", errors.Take(20)));
        Assert.Equal(0, Interlocked.Read(ref lostWakeups));
        while (exportFds.TryDequeue(out var e)) e.P.Close(e.Fd);
        if (exporterGd.P is not null) Assert.Equal(0, exporterGd.P.Close(exporterGd.Gd));
        sharer.Close(ga);
        foreach (var p in extra) { Assert.True(p.WaitIdle(TimeSpan.FromSeconds(60))); p.Dispose(); }
        w.ExitAll();
        Checks.NoLeaks(w.Host, "after the race run");
        Checks.Invariants(w.Xen, "after the race run");
        Stress.Report(output, $"races: {Workers} threads, {ops} operations, {waits} waits, lost wake-ups {lostWakeups}, leaks 0, {sw.Elapsed.TotalSeconds:F1} s");
    }
}
