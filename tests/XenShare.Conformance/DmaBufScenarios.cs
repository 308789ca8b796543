using System.Diagnostics;
using XenShare.Abi;
using XenShare.Api;

namespace XenShare.Conformance;

/// <summary>gntdev dma-buf export (EX), wait for release (EW), import (EI).</summary>
internal static class DmaBufScenarios
{
    public static IEnumerable<ConformanceScenario> All()
    {
        yield return new("EX02", "export count 0 or over the limit", EX02);
        yield return new("EX03+D04", "WC|COHERENT refused, unknown flag bits ignored", EX03);
        yield return new("EX05", "a read-only grant cannot be exported", EX05);
        yield return new("EX06", "a failing grant fails the export; the others can be exported again", EX06);
        yield return new("EX06/entries", "a failed export leaves the other grants unmapped (granter flags)", EX06Entries, EntriesReason);
        yield return new("EX08", "export gives an fd of count*4096 bytes", EX08);
        yield return new("EX13", "an export outlives the granter's dealloc and is released once at the last close", EX13);
        yield return new("EX09+EX13/entries", "grants mapped (reading|writing) while the buffer lives, unmapped at release", EX09Entries, EntriesReason);
        yield return new("EX10+EX11+DB02+DB03+DB04", "exported buffer: no mmap, SYNC is a no-op, lseek", EX11);
        yield return new("EX12", "closing gntdev keeps an exported buffer alive", EX12);
        yield return new("EX12/entries", "closing gntdev leaves an exported buffer's grants mapped until release", EX12Entries, EntriesReason);
        yield return new("EW01", "wait on an unknown key is ENOENT", EW01);
        yield return new("EW02+EW03", "wait key outlives the fd; timeouts", EW02);
        yield return new("EW04", "release while a waiter is blocked in the wait wakes it with 0", EW04);
        yield return new("EW05+LG02", "wait after release is ENOENT (typed: released)", EW05);
        yield return new("EW06", "cancelling an async wait leaves the buffer alone", EW06);
        yield return new("EI01", "import argument errors", EI01);
        yield return new("EI03", "import size mismatch", EI03);
        yield return new("EI05", "import grants the buffer's pages read-write, in order", EI05);
        yield return new("EI05/entries", "import's grant entries: permit_access read-write, the peer's domid", EI05Entries, EntriesReason);
        yield return new("EI06", "import: reserved unchecked, unknown domid accepted", EI06);
        yield return new("EI07", "import survives closing the dma-buf fd", EI07);
        yield return new("EI08", "release of unknown/released key is ENOENT", EI08);
        yield return new("EI09", "release while the peer maps: 0, the mapping keeps working", EI09);
        yield return new("EI09+D06", "deferred reclaim is pending until the peer unmaps", EI09Deferred,
            "the pending reclaim list is kernel-internal; a real dom0 process cannot read it");
        yield return new("EI09+D02+GA02", "an export's import the peer maps: after release, teardown and reuse the peer keeps the old content", EI09Reuse);
        yield return new("EI10", "release with no peer mapping: the peer can no longer map the refs", EI10);
        yield return new("EI10/entries", "release with no peer mapping clears every entry at once", EI10Entries, EntriesReason);
        yield return new("EI11", "closing gntdev releases every import", EI11);
    }

    internal const string EntriesReason = "grant entries are the granter's hypervisor-side state; a real domain process cannot read them";

    private static void EX02(ConformanceContext c)
    {
        var p = c.Process;
        using var dev = GrantDevice.Open(p);
        Check.Errno(Errno.EINVAL, Raw.Export(p, dev.Fd, Raw.ExportArg(c.Peer, []), out _), "EXP count 0");
        var big = new uint[Raw.GntDevLimit + 1];
        Check.Errno(Errno.EINVAL, Raw.Export(p, dev.Fd, Raw.ExportArg(c.Peer, big), out _), "EXP count limit+1");
    }

    private static void EX03(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(p);
        Check.Errno(Errno.EINVAL, Raw.Export(p, dev.Fd, c.Peer, g.Refs, out _, GntDevIoctl.GNTDEV_DMA_FLAG_WC | GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT), "WC|COHERENT");
        Check.Ok(Raw.Export(p, dev.Fd, c.Peer, g.Refs, out int fd, 0x100), "unknown flag bit");
        Check.Ok(p.Close(fd), "close");
        Check.Ok(Raw.WaitReleased(p, dev.Fd, fd, 30000) is 0 or -Errno.ENOENT ? 0 : -1, "released");
    }

    private static void EX05(ConformanceContext c)
    {
        using var g = new PeerGrants(c, 2, writable: false);
        using var dev = GrantDevice.Open(c.Process);
        Check.Errno(Errno.EINVAL, Raw.Export(c.Process, dev.Fd, c.Peer, g.Refs, out _), "export of read-only grants");
    }

    private static void EX06(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        using var dev = GrantDevice.Open(p);
        Check.Errno(Errno.EINVAL, Raw.Export(p, dev.Fd, c.Peer, [g.Refs[0], 0xFFFF0u, g.Refs[1]], out _), "export with a bad ref");
        // Another domain id than the granted one.
        ushort other = (ushort)(c.Peer.Value == 0 ? 0x7fe0 : 0);
        Check.Errno(Errno.EINVAL, Raw.Export(p, dev.Fd, new DomainId(other), g.Refs, out _), "export naming a wrong domain");
        // Both refs are still exportable: the failures left nothing mapped.
        Check.Ok(Raw.Export(p, dev.Fd, c.Peer, g.Refs, out int fd), "export after the failures");
        Check.Ok(p.Close(fd), "close");
    }

    private static void EX06Entries(ConformanceContext c, IEmulatorProbe probe)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        using var dev = GrantDevice.Open(p);
        Check.Errno(Errno.EINVAL, Raw.Export(p, dev.Fd, c.Peer, [g.Refs[0], 0xFFFF0u, g.Refs[1]], out _), "export with a bad ref");
        Check.Equal(Gtf.permit_access, probe.GrantEntry(c.Peer, g.Refs[0]).Flags, "mapped grant unmapped again");
        Check.Equal(Gtf.permit_access, probe.GrantEntry(c.Peer, g.Refs[1]).Flags, "the grant after the bad one never mapped");
    }

    private static void EX08(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 3);
        using var dev = GrantDevice.Open(p);
        using var buf = dev.ExportDmaBuf(c.Peer, [new GrantRef(g.Refs[0]), new GrantRef(g.Refs[1]), new GrantRef(g.Refs[2])]);
        Check.True(buf.Fd >= 0 && buf.Fd != dev.Fd, "a new fd");
        Check.Equal(3L * 4096, p.Lseek(buf.Fd, 0, Posix.SEEK_END), "size");
        Check.Equal(0L, p.Lseek(buf.Fd, 0, Posix.SEEK_SET), "data offset 0");
        Check.Equal(3L * 4096, buf.Size, "typed size");
    }

    private static void EX13(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Export(p, dev.Fd, c.Peer, g.Refs, out int fd), "export");
        // The granter lets go of its side: the export keeps the grants mapped (end access fails while mapped).
        g.Memory[4096 + 1] = 0x99;
        g.Unmap();
        g.Deallocate();
        Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(p, dev.Fd, fd, 0), "buffer alive after the granter's dealloc");
        Check.Ok(p.Close(fd), "close the only fd");
        int w = Raw.WaitReleased(p, dev.Fd, fd, 30000);
        Check.True(w is 0 or -Errno.ENOENT, "released: " + Check.Describe(w));
        Check.Errno(Errno.ENOENT, Raw.WaitReleased(p, dev.Fd, fd, 0), "released once: the key is gone");
    }

    private static void EX09Entries(ConformanceContext c, IEmulatorProbe probe)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Export(p, dev.Fd, c.Peer, g.Refs, out int fd), "export");
        const ushort mapped = Gtf.permit_access | Gtf.reading | Gtf.writing;
        foreach (uint r in g.Refs) Check.Equal(mapped, probe.GrantEntry(c.Peer, r).Flags, "flags while exported");
        g.Unmap();
        g.Deallocate();
        Check.Equal(mapped, probe.GrantEntry(c.Peer, g.Refs[1]).Flags, "still granted and mapped after dealloc");
        Check.Ok(p.Close(fd), "close the only fd");
        int w = Raw.WaitReleased(p, dev.Fd, fd, 30000);
        Check.True(w is 0 or -Errno.ENOENT, "released: " + Check.Describe(w));
        foreach (uint r in g.Refs)
            Check.Equal(0, probe.GrantEntry(c.Peer, r).Flags & (Gtf.reading | Gtf.writing), "no longer mapped once the export released");
    }

    private static void EX11(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 2);
        using var dev = GrantDevice.Open(p);
        using var buf = dev.ExportDmaBuf(c.Peer, [new GrantRef(g.Refs[0]), new GrantRef(g.Refs[1])]);
        Check.Errno(Errno.EINVAL, p.Mmap(buf.Fd, 0, 4096, Posix.PROT_READ, Posix.MAP_SHARED), "mmap of the exported buffer");
        Check.Ok(Raw.Sync(p, buf.Fd, DmaBufIoctl.DMA_BUF_SYNC_START | DmaBufIoctl.DMA_BUF_SYNC_RW), "SYNC start", anyNonNegative: false);
        Check.Ok(Raw.Sync(p, buf.Fd, DmaBufIoctl.DMA_BUF_SYNC_END | DmaBufIoctl.DMA_BUF_SYNC_READ), "SYNC end", anyNonNegative: false);
        Check.Errno(Errno.EINVAL, Raw.Sync(p, buf.Fd, DmaBufIoctl.DMA_BUF_SYNC_END), "SYNC with no direction");
        Check.Errno(Errno.EINVAL, Raw.Sync(p, buf.Fd, 8), "SYNC unknown flag");
        Check.Errno(Errno.ENOTTY, p.Ioctl(buf.Fd, Ioc.Encode(Ioc.None, 'b', 99, 0), []), "unknown dma-buf ioctl");
        Check.Equal(2L * 4096, p.Lseek(buf.Fd, 0, Posix.SEEK_END), "SEEK_END 0");
        Check.Equal(0L, p.Lseek(buf.Fd, 0, Posix.SEEK_SET), "SEEK_SET 0");
        Check.Errno(Errno.EINVAL, p.Lseek(buf.Fd, 5, Posix.SEEK_SET), "SEEK_SET 5");
        Check.Errno(Errno.EINVAL, p.Lseek(buf.Fd, 0, Posix.SEEK_CUR), "SEEK_CUR");
    }

    private static void EX12(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        var dev = GrantDevice.Open(p);
        int rc = Raw.Export(p, dev.Fd, c.Peer, g.Refs, out int fd);
        Check.Ok(rc, "export");
        dev.Dispose();
        Check.Equal(4096L, p.Lseek(fd, 0, Posix.SEEK_END), "buffer alive after closing gntdev");
        Check.Ok(p.Close(fd), "close");
    }

    private static void EX12Entries(ConformanceContext c, IEmulatorProbe probe)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Export(p, dev.Fd, c.Peer, g.Refs, out int fd), "export");
        dev.Dispose();
        Check.Equal((ushort)(Gtf.permit_access | Gtf.reading | Gtf.writing), probe.GrantEntry(c.Peer, g.Refs[0]).Flags, "grant still mapped");
        Check.Ok(p.Close(fd), "close");
        Check.Equal(Gtf.permit_access, probe.GrantEntry(c.Peer, g.Refs[0]).Flags, "unmapped at release");
    }

    private static void EW01(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(p);
        using var other = GrantDevice.Open(p);
        Check.Errno(Errno.ENOENT, Raw.WaitReleased(p, dev.Fd, 1000, 0), "never exported");
        using var buf = dev.ExportDmaBuf(c.Peer, [new GrantRef(g.Refs[0])]);
        Check.Errno(Errno.ENOENT, Raw.WaitReleased(p, other.Fd, buf.Fd, 0), "exported on another gntdev file");
        Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(p, dev.Fd, buf.Fd, 0), "exported here");
    }

    private static void EW02(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Export(p, dev.Fd, c.Peer, g.Refs, out int fd), "export");
        int dup = (int)Check.Ok(p.Dup(fd), "dup");
        Check.Ok(p.Close(fd), "close the exported fd number");
        Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(p, dev.Fd, fd, 0), "key still valid, wait 0");
        var sw = Stopwatch.StartNew();
        Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(p, dev.Fd, fd, 50), "wait 50 ms");
        Check.True(sw.ElapsedMilliseconds >= 40, $"waited {sw.ElapsedMilliseconds} ms");
        Check.Ok(p.Close(dup), "close the dup");
        int w = Raw.WaitReleased(p, dev.Fd, fd, 30000);
        Check.True(w is 0 or -Errno.ENOENT, "released: " + Check.Describe(w));
    }

    /// <summary>EW04 with a real barrier: the release happens only once the waiting thread is seen blocked
    /// inside the wait (the kernel's thread state on real Xen, the emulated kernel's record on the
    /// emulator), so the wait must return 0 - never ENOENT, which a wait that started late would get.</summary>
    private static void EW04(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Export(p, dev.Fd, c.Peer, g.Refs, out int fd), "export");
        int managed = 0, tid = 0, result = int.MinValue;
        var waiter = new Thread(() =>
        {
            managed = Environment.CurrentManagedThreadId;
            Volatile.Write(ref tid, LinuxThreads.GetTid());
            Volatile.Write(ref result, Raw.WaitReleased(p, dev.Fd, fd, 60000));
        }) { IsBackground = true, Name = "EW04 waiter" };
        waiter.Start();
        bool blocked = SpinWait.SpinUntil(() => Volatile.Read(ref tid) != 0 && c.IsBlockedInWait(managed, tid), TimeSpan.FromSeconds(30));
        Check.True(blocked, "the waiter is blocked inside EXP_WAIT_RELEASED before the release");
        Check.Equal(int.MinValue, Volatile.Read(ref result), "the waiter has not returned before the release");
        var sw = Stopwatch.StartNew();
        Check.Ok(p.Close(fd), "close the only fd (the release)");
        Check.True(waiter.Join(TimeSpan.FromSeconds(60)), "the wait returned");
        Check.Equal(0, Volatile.Read(ref result), "the blocked wait is woken with 0");
        Check.True(sw.Elapsed < TimeSpan.FromSeconds(20), $"promptly ({sw.ElapsedMilliseconds} ms)");
    }

    private static void EW05(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(p);
        var buf = dev.ExportDmaBuf(c.Peer, [new GrantRef(g.Refs[0])]);
        Check.True(!buf.WaitForRelease(TimeSpan.Zero), "typed wait on a live buffer: timed out");
        buf.Dispose();
        Check.True(buf.WaitForRelease(TimeSpan.FromSeconds(30)), "typed wait: released");
        Check.Errno(Errno.ENOENT, Raw.WaitReleased(p, dev.Fd, buf.Fd, 1000), "raw wait after release");
        Check.True(buf.WaitForRelease(TimeSpan.Zero), "typed wait after release (ENOENT = released)");
    }

    private static void EW06(ConformanceContext c)
    {
        var p = c.Process;
        using var g = new PeerGrants(c, 1);
        using var dev = GrantDevice.Open(p);
        using var buf = dev.ExportDmaBuf(c.Peer, [new GrantRef(g.Refs[0])]);
        using var cts = new CancellationTokenSource();
        // A long timeout: the wait must end by the cancellation, not by running out (under QEMU TCG the
        // next line alone once took longer than a 300 ms timeout). The blocked ioctl (native) returns when
        // the buffer is released at the end of the scenario.
        var t = buf.WaitForReleaseAsync(TimeSpan.FromSeconds(120), cts.Token);
        cts.Cancel();
        try
        {
            t.Wait(TimeSpan.FromSeconds(30));
            Check.True(false, "cancelled wait completed normally");
        }
        catch (AggregateException e) when (e.InnerException is TaskCanceledException) { }
        Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(p, dev.Fd, buf.Fd, 0), "buffer untouched by the cancellation");
    }

    private static void EI01(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 1);
        using var dev = GrantDevice.Open(p);
        Check.Errno(Errno.EINVAL, Raw.Import(p, dev.Fd, local.Fd, 0, c.Peer, out _), "count 0");
        Check.Errno(Errno.EINVAL, Raw.Import(p, dev.Fd, local.Fd, Raw.GntDevLimit + 1, c.Peer, out _), "count over the limit");
        Check.Errno(Errno.EBADF, Raw.Import(p, dev.Fd, 4000, 1, c.Peer, out _), "fd not open");
        Check.Errno(Errno.EINVAL, Raw.Import(p, dev.Fd, dev.Fd, 1, c.Peer, out _), "fd not a dma-buf");
    }

    private static void EI03(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 2);
        using var dev = GrantDevice.Open(p);
        Check.Errno(Errno.EINVAL, Raw.Import(p, dev.Fd, local.Fd, 1, c.Peer, out _), "count smaller than the buffer");
        Check.Errno(Errno.EINVAL, Raw.Import(p, dev.Fd, local.Fd, 3, c.Peer, out _), "count larger than the buffer");
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 2, c.Peer, out _), "exact count");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "release");
    }

    /// <summary>Imports a local buffer and lets the peer map the refs.</summary>
    private static void EI05(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 3);
        for (int i = 0; i < 3; i++) local.Memory[i * 4096] = (byte)(0xA0 + i);
        using var dev = GrantDevice.Open(p);
        using var imp = dev.ImportDmaBuf(local.Fd, 3, c.Peer);
        var refs = imp.Refs.Select(r => r.Value).ToArray();
        Check.Equal(3, refs.Distinct().Count(), "distinct refs");
        foreach (uint r in refs) Check.True(r >= 8, $"ref {r} >= 8");
        using var peerDev = GrantDevice.Open(c.PeerProcess);
        using (var m = peerDev.Map(c.Self, imp.Refs.ToArray()))
        {
            for (int i = 0; i < 3; i++) Check.Equal((byte)(0xA0 + i), m.Memory.Span[i * 4096], $"page {i} in order");
            m.Memory.Span[2 * 4096 + 1] = 0x5C;
        }
        Check.Equal((byte)0x5C, local.Memory[2 * 4096 + 1], "peer wrote through the grant");
    }

    private static void EI05Entries(ConformanceContext c, IEmulatorProbe probe)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 3);
        using var dev = GrantDevice.Open(p);
        using var imp = dev.ImportDmaBuf(local.Fd, 3, c.Peer);
        foreach (var r in imp.Refs)
        {
            var e = probe.GrantEntry(c.Self, r.Value);
            Check.Equal(Gtf.permit_access, e.Flags, "entry flags (read-write permit_access)");
            Check.Equal(c.Peer.Value, e.DomId, "entry domid");
        }
    }

    private static void EI06(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 1);
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 1, c.Peer, out _, reserved: 0xDEAD), "reserved non-zero");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "release");
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 1, new DomainId(0x7fe0), out _), "a domain that does not exist");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "release");
    }

    private static void EI07(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 1);
        local.Memory[0] = 0x3C;
        using var dev = GrantDevice.Open(p);
        int key = local.Fd;
        Check.Ok(Raw.Import(p, dev.Fd, key, 1, c.Peer, out uint[] refs), "import");
        local.CloseFd();
        using (var peerDev = GrantDevice.Open(c.PeerProcess))
        using (var m = peerDev.Map(c.Self, [new GrantRef(refs[0])]))
            Check.Equal((byte)0x3C, m.Memory.Span[0], "still granted after closing the dma-buf fd");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, key), "release by the same number");
    }

    private static void EI08(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 1);
        using var dev = GrantDevice.Open(p);
        Check.Errno(Errno.ENOENT, Raw.ImportRelease(p, dev.Fd, 999), "unknown key");
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 1, c.Peer, out _), "import");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "release");
        Check.Errno(Errno.ENOENT, Raw.ImportRelease(p, dev.Fd, local.Fd), "second release");
    }

    private static void EI09(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 1);
        local.Memory[8] = 0x18;
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 1, c.Peer, out uint[] refs), "import");
        using var peerDev = GrantDevice.Open(c.PeerProcess);
        var m = peerDev.Map(c.Self, [new GrantRef(refs[0])]);
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "release while mapped");
        Check.Equal((byte)0x18, m.Memory.Span[8], "peer mapping keeps working");
        m.Memory.Span[9] = 1;
        m.Dispose();
    }

    private static void EI09Deferred(ConformanceContext c, IEmulatorProbe probe)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 2);
        using var dev = GrantDevice.Open(p);
        int before = probe.DeferredReclaims(c.Self);
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 2, c.Peer, out uint[] refs), "import");
        using var peerDev = GrantDevice.Open(c.PeerProcess);
        var m = peerDev.Map(c.Self, [new GrantRef(refs[1])]);
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "release while mapped");
        Check.Equal(before + 1, probe.DeferredReclaims(c.Self), "one entry pending");
        Check.Equal((ushort)0, probe.GrantEntry(c.Self, refs[0]).Flags, "the unmapped ref ended at once");
        m.Dispose();
        Check.Equal(before, probe.DeferredReclaims(c.Self), "reclaimed when the peer unmapped (D06)");
        Check.Equal((ushort)0, probe.GrantEntry(c.Self, refs[1]).Flags, "ended after the unmap");
    }

    /// <summary>The reused-memory probe (an isolation bug of the emulator, found across domains): this domain
    /// grants pages to itself, maps and exports them (flags 0: WC/COHERENT would hit the real driver's
    /// no-CMA defect, docs/conformance.md), imports the export for the peer, which maps the refs; then it
    /// closes the export, releases the import, unmaps, closes gntdev and gntalloc, and fills 1024 fresh
    /// pages with a secret. The peer must still read the old pattern in every page.</summary>
    private static void EI09Reuse(ConformanceContext c)
    {
        const int Pages = 4, ReusePages = 1024;
        var p = c.Process;
        var secret = "DOM0-SECRET"u8.ToArray();
        static byte[] Pattern(int i) => System.Text.Encoding.ASCII.GetBytes($"PATTERN-{i:D2}-OLD-CONTENT");
        var sharer = GrantSharer.Open(p);
        SharedPages? pages = null;
        GrantDevice? dev = null;
        GrantMapping? own = null, peer = null;
        ExportedDmaBuf? export = null;
        GrantDevice? peerDev = null;
        try
        {
            pages = sharer.Share(c.Self, Pages);
            for (int i = 0; i < Pages; i++) Pattern(i).CopyTo(pages.Memory.Span[(i * Raw.Page)..]);
            dev = GrantDevice.Open(p);
            own = dev.Map(c.Self, pages.Refs.ToArray());
            for (int i = 0; i < Pages; i++) Check.True(own.Memory.Span[(i * Raw.Page)..].StartsWith(Pattern(i)), "own gntdev mapping shows the pattern");
            export = dev.ExportDmaBuf(c.Self, pages.Refs.ToArray());
            int key = export.Fd;
            Check.Ok(Raw.Import(p, dev.Fd, key, Pages, c.Peer, out uint[] refs), "import the export for the peer");
            peerDev = GrantDevice.Open(c.PeerProcess);
            peer = peerDev.Map(c.Self, refs.Select(r => new GrantRef(r)).ToArray());
            for (int i = 0; i < Pages; i++) Check.True(peer.Memory.Span[(i * Raw.Page)..].StartsWith(Pattern(i)), "peer mapping shows the pattern");

            export.Close();
            Check.Ok(Raw.ImportRelease(p, dev.Fd, key), "release while the peer maps (EI09)");
            Check.Errno(Errno.ENOENT, Raw.WaitReleased(p, dev.Fd, key, 0), "the export is released at once (D02)");
            own.Dispose();
            pages.Dispose();
            sharer.Dispose();
            dev.Dispose();

            using (var reuse = ProcessBuffer.Allocate(p, ReusePages * Raw.Page))
            {
                for (int i = 0; i < ReusePages; i++) secret.CopyTo(reuse.Memory.Span[(i * Raw.Page)..]);
                int old = 0, leaked = 0;
                for (int i = 0; i < Pages; i++)
                {
                    var page = peer.Memory.Span.Slice(i * Raw.Page, Raw.Page);
                    if (page.StartsWith(Pattern(i))) old++;
                    if (page.StartsWith(secret)) leaked++;
                }
                Check.Equal(0, leaked, "pages of the peer's mapping showing the owner's reused memory");
                Check.Equal(Pages, old, "pages of the peer's mapping still showing the old content (GA02: not freed while mapped)");
            }
        }
        finally
        {
            peer?.Dispose();
            peerDev?.Dispose();
            own?.Dispose();
            export?.Dispose();
            pages?.Dispose();
            sharer.Dispose();
            dev?.Dispose();
        }
    }

    private static void EI10(ConformanceContext c)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 2);
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 2, c.Peer, out uint[] refs), "import");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "release");
        using var peerDev = GrantDevice.Open(c.PeerProcess);
        Check.Throws(Errno.EINVAL, () => peerDev.Map(c.Self, [new GrantRef(refs[0])]).Dispose(), "peer map of a released ref");
    }

    private static void EI10Entries(ConformanceContext c, IEmulatorProbe probe)
    {
        var p = c.Process;
        using var local = new LocalDmaBuf(c, 2);
        using var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Import(p, dev.Fd, local.Fd, 2, c.Peer, out uint[] refs), "import");
        Check.Ok(Raw.ImportRelease(p, dev.Fd, local.Fd), "release");
        foreach (uint r in refs) Check.Equal((ushort)0, probe.GrantEntry(c.Self, r).Flags, "entry cleared at once");
    }

    private static void EI11(ConformanceContext c)
    {
        var p = c.Process;
        using var a = new LocalDmaBuf(c, 1);
        using var b = new LocalDmaBuf(c, 1);
        var dev = GrantDevice.Open(p);
        Check.Ok(Raw.Import(p, dev.Fd, a.Fd, 1, c.Peer, out uint[] ra), "import a");
        Check.Ok(Raw.Import(p, dev.Fd, b.Fd, 1, c.Peer, out uint[] rb), "import b");
        dev.Dispose();
        using var peerDev = GrantDevice.Open(c.PeerProcess);
        Check.Throws(Errno.EINVAL, () => peerDev.Map(c.Self, [new GrantRef(ra[0])]).Dispose(), "ref of a after close");
        Check.Throws(Errno.EINVAL, () => peerDev.Map(c.Self, [new GrantRef(rb[0])]).Dispose(), "ref of b after close");
    }
}
