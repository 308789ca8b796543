using System.Globalization;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Xenstore;

namespace XenShare.Conformance;

/// <summary>
/// Scenarios with a granter and a mapper in different domains (XD01, XD02), each written as a domU half and
/// a dom0 half that run at the same time in their own domains and meet through xenstore: a mailbox under
/// the domU's <c>data/xenshare-xd/&lt;scenario&gt;</c> (the domU owns it; dom0 may write anywhere). On
/// the emulator both halves run in one host; in the real-Xen stage the domU's runner runs its halves
/// (<c>--two-domain</c>) while a second runner in dom0 serves the other halves (<c>--serve-peer</c>).
/// </summary>
public static class TwoDomainScenarios
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(120);

    /// <summary>One two-domain scenario: its IDs, name, and both halves.</summary>
    public sealed record Scenario(string Ids, string Name, Func<TwoDomainContext, Task> DomU, Func<TwoDomainContext, Task> Dom0);

    /// <summary>The scenarios, in the order both sides run them.</summary>
    public static IReadOnlyList<Scenario> All { get; } =
    [
        new("XD01", "a domU's pages mapped by dom0 and exported as dma-bufs (flags 0, WC, COHERENT) naming the domU; writes seen both ways", XD01DomU, XD01Dom0),
        new("XD02+EI09", "dom0 imports a dma-buf to refs for the domU, which maps them; IMP_RELEASE while mapped returns 0 and the mapping keeps working", XD02DomU, XD02Dom0),
        new("XD05", "wrong refs and domids across domains: MAP_GRANT_REF succeeds, mmap and export fail with EINVAL; the right ones work", XD05DomU, XD05Dom0),
        new("GT10+EX13/xd", "the domU ends its grants (gntalloc dealloc) while dom0 maps one and exports another: the mapping keeps working, the export lives until closed", GT10DomU, GT10Dom0),
        new("EI05+EI07+EI08/xd", "dom0 imports a dma-buf to refs for the domU and closes its fd: distinct refs >= 8 the domU maps writable; dom0 sees its writes; IMP_RELEASE 0, then ENOENT", EI05DomU, EI05Dom0),
    ];

    /// <summary>Scenarios whose domU dies in the middle (dom0 destroys it): run with a domU of their own
    /// (the real-Xen stage's second domU, <c>--victim</c>); dom0's half reports the outcome.</summary>
    public static IReadOnlyList<Scenario> Victim { get; } =
    [
        new("XD03+XD04", "a domU destroyed while dom0 maps its grants (mapping and export live on, released normally, then the domain is gone) and while it maps dom0's import refs (IMP_RELEASE returns 0)", VictimDomU, VictimDom0),
    ];

    /// <summary>Runs the domU half of a scenario: PASS, or FAIL with the message (never throws).</summary>
    public static ScenarioResult RunDomU(Scenario s, TwoDomainContext c) => Run(() => s.DomU(c));

    /// <summary>Runs the dom0 half of a scenario (never throws).</summary>
    public static ScenarioResult RunDom0(Scenario s, TwoDomainContext c) => Run(() => s.Dom0(c));

    private static ScenarioResult Run(Func<Task> half)
    {
        try
        {
            Task.Run(half).WaitAsync(Patience).GetAwaiter().GetResult();
            return ScenarioResult.Pass();
        }
        catch (Exception e)
        {
            string msg = e is ConformanceException ? e.Message : e.GetType().Name + ": " + e.Message;
            return ScenarioResult.Fail(msg.Replace('\n', ' ').Replace('\r', ' '));
        }
    }

    /// <summary>Refs posted in a mailbox as "r1,r2,...".</summary>
    private static GrantRef[] ParseRefs(string posted) =>
        posted.Split(',').Select(r => new GrantRef(uint.Parse(r, CultureInfo.InvariantCulture))).ToArray();

    private static byte[] Pattern(string who, int page) => System.Text.Encoding.ASCII.GetBytes($"{who}-PAGE-{page}");

    // ------------------------------------------------------------------ XD01

    private static async Task XD01DomU(TwoDomainContext c)
    {
        var mb = c.Mailbox("XD01");
        using var sharer = GrantSharer.Open(c.Process);
        using var pages = sharer.Share(c.Peer, 4);
        for (int i = 0; i < 4; i++) Pattern("DOMU", i).CopyTo(pages.Memory.Span[(i * Raw.Page)..]);
        await mb.PostAsync("refs", string.Join(",", pages.Refs.Select(r => r.Value)));
        string verdict = await mb.WaitForAsync("dom0-done");
        if (verdict != "ok") throw new ConformanceException("dom0: " + verdict);
        for (int i = 0; i < 4; i++)
            Check.True(pages.Memory.Span[(i * Raw.Page + 100)..].StartsWith(Pattern("DOM0", i)), $"page {i}: dom0's write seen in the domU");
        await mb.PostAsync("domu-done", "ok");
    }

    private static async Task XD01Dom0(TwoDomainContext c)
    {
        var mb = c.Mailbox("XD01");
        try
        {
            var refs = ParseRefs(await mb.WaitForAsync("refs"));
            using var dev = GrantDevice.Open(c.Process);
            using (var map = dev.Map(c.Peer, refs))
            {
                for (int i = 0; i < 4; i++)
                {
                    Check.True(map.Memory.Span[(i * Raw.Page)..].StartsWith(Pattern("DOMU", i)), $"page {i}: the domU's pattern seen in dom0");
                    Pattern("DOM0", i).CopyTo(map.Memory.Span[(i * Raw.Page + 100)..]);
                }
            }
            foreach (var backing in new[] { DmaBufBacking.None, DmaBufBacking.WriteCombine, DmaBufBacking.Coherent })
            {
                var buf = dev.ExportDmaBuf(c.Peer, refs, backing);
                Check.Equal(4L * Raw.Page, buf.Size, $"export ({backing}) size");
                Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(c.Process, dev.Fd, buf.Fd, 0), $"export ({backing}) alive");
                buf.Close();
                Check.True(buf.WaitForRelease(TimeSpan.FromSeconds(60)), $"export ({backing}) released after close");
            }
            await mb.PostAsync("dom0-done", "ok");
        }
        catch (Exception e)
        {
            await mb.PostAsync("dom0-done", "FAIL " + e.Message);
            throw;
        }
        string domu = await mb.WaitForAsync("domu-done");
        if (domu != "ok") throw new ConformanceException("domU: " + domu);
    }

    // ------------------------------------------------------------------ GT10+EX13 across domains

    private static async Task GT10DomU(TwoDomainContext c)
    {
        var mb = c.Mailbox("GT10");
        using var sharer = GrantSharer.Open(c.Process);
        var pages = sharer.Share(c.Peer, 2);
        try
        {
            for (int i = 0; i < 2; i++) Pattern("DOMU", i).CopyTo(pages.Memory.Span[(i * Raw.Page)..]);
            await mb.PostAsync("refs", string.Join(",", pages.Refs.Select(r => r.Value)));
            string mapped = await mb.WaitForAsync("mapped");
            if (mapped != "ok") throw new ConformanceException("dom0: " + mapped);
        }
        finally
        {
            pages.Dispose();   // munmap + dealloc while dom0 still maps / exports: the end of access is deferred
        }
        await mb.PostAsync("ended", "ok");
        string verdict = await mb.WaitForAsync("dom0-done");
        if (verdict != "ok") throw new ConformanceException("dom0: " + verdict);
    }

    private static async Task GT10Dom0(TwoDomainContext c)
    {
        var mb = c.Mailbox("GT10");
        try
        {
            var refs = ParseRefs(await mb.WaitForAsync("refs"));
            using var dev = GrantDevice.Open(c.Process);
            using var map = dev.Map(c.Peer, refs.AsSpan(0, 1));
            var export = dev.ExportDmaBuf(c.Peer, refs.AsSpan(1));
            await mb.PostAsync("mapped", "ok");
            string ended = await mb.WaitForAsync("ended");
            if (ended != "ok") throw new ConformanceException("domU: " + ended);
            // GT10: the granter's end of access did not revoke the grant in use.
            Check.True(map.Memory.Span.StartsWith(Pattern("DOMU", 0)), "the mapping still shows the domU's page after its dealloc");
            Pattern("DOM0", 0).CopyTo(map.Memory.Span[100..]);
            Check.True(map.Memory.Span[100..].StartsWith(Pattern("DOM0", 0)), "and is still writable");
            // EX13 across domains: the export outlives the granter's dealloc.
            Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(c.Process, dev.Fd, export.Fd, 0), "the export is still alive after the domU's dealloc");
            export.Close();
            Check.True(export.WaitForRelease(TimeSpan.FromSeconds(60)), "the export released at close");
            await mb.PostAsync("dom0-done", "ok");
        }
        catch (Exception e)
        {
            await mb.PostAsync("dom0-done", "FAIL " + e.Message);
            throw;
        }
    }

    // ------------------------------------------------------------------ EI05+EI07+EI08 across domains

    private static async Task EI05DomU(TwoDomainContext c)
    {
        var mb = c.Mailbox("EI05");
        var refs = ParseRefs(await mb.WaitForAsync("refs"));
        Check.Equal(3, refs.Length, "ref count");
        Check.Equal(3, refs.Distinct().Count(), "the refs are distinct (EI05)");
        Check.True(refs.All(r => r.Value >= 8), "no ref in 0..7 (EI05)");
        using var dev = GrantDevice.Open(c.Process);
        using (var map = dev.Map(c.Peer, refs))   // read-write: permit_access without GTF_readonly (EI05)
        {
            for (int i = 0; i < refs.Length; i++)
            {
                Check.True(map.Memory.Span[(i * Raw.Page)..].StartsWith(Pattern("DOM0", i)), $"page {i}: dom0's pattern after dom0 closed its dma-buf fd (EI07)");
                Pattern("DOMU", i).CopyTo(map.Memory.Span[(i * Raw.Page + 300)..]);
            }
        }
        await mb.PostAsync("unmapped", "ok");
        string verdict = await mb.WaitForAsync("dom0-done");
        if (verdict != "ok") throw new ConformanceException("dom0: " + verdict);
    }

    private static async Task EI05Dom0(TwoDomainContext c)
    {
        var mb = c.Mailbox("EI05");
        try
        {
            using var sharer = GrantSharer.Open(c.Process);
            using var pages = sharer.Share(c.Self, 3);
            for (int i = 0; i < 3; i++) Pattern("DOM0", i).CopyTo(pages.Memory.Span[(i * Raw.Page)..]);
            using var dev = GrantDevice.Open(c.Process);
            var buf = dev.ExportDmaBuf(c.Self, pages.Refs.ToArray());
            int key = buf.Fd;
            Check.Ok(Raw.Import(c.Process, dev.Fd, key, 3, c.Peer, out uint[] refs), "IMP_TO_REFS for the domU");
            buf.Close();                                                                  // EI07: the import stays valid
            await mb.PostAsync("refs", string.Join(",", refs));
            string unmapped = await mb.WaitForAsync("unmapped");
            if (unmapped != "ok") throw new ConformanceException("domU: " + unmapped);
            for (int i = 0; i < 3; i++)
                Check.True(pages.Memory.Span[(i * Raw.Page + 300)..].StartsWith(Pattern("DOMU", i)), $"page {i}: the domU's write seen in dom0's page");
            Check.Ok(Raw.ImportRelease(c.Process, dev.Fd, key), "IMP_RELEASE after the domU unmapped");
            Check.Errno(Errno.ENOENT, Raw.ImportRelease(c.Process, dev.Fd, key), "a second IMP_RELEASE (EI08)");
            Check.Errno(Errno.ENOENT, Raw.ImportRelease(c.Process, dev.Fd, 0x7ffffff0), "IMP_RELEASE of an unknown number (EI08)");
            Check.True(buf.WaitForRelease(TimeSpan.FromSeconds(60)), "the local export released with the import");
            await mb.PostAsync("dom0-done", "ok");
        }
        catch (Exception e)
        {
            await mb.PostAsync("refs", "FAIL");
            await mb.PostAsync("dom0-done", "FAIL " + e.Message);
            throw;
        }
    }

    // ------------------------------------------------------------------ XD05

    private static async Task XD05DomU(TwoDomainContext c)
    {
        var mb = c.Mailbox("XD05");
        using var sharer = GrantSharer.Open(c.Process);
        using var toDom0 = sharer.Share(c.Peer, 1);
        using var toNobody = sharer.Share(new DomainId(0x7fe0), 1);   // a domain that does not exist (RX04)
        using var readOnly = sharer.Share(c.Peer, 1, writable: false);
        byte[] marker = Guid.NewGuid().ToByteArray();
        marker.CopyTo(toDom0.Memory.Span);
        await mb.PostAsync("refs", $"{toDom0.Refs[0].Value},{toNobody.Refs[0].Value},{readOnly.Refs[0].Value}");
        await mb.PostAsync("marker", Convert.ToHexString(marker));
        string verdict = await mb.WaitForAsync("dom0-done");
        if (verdict != "ok") throw new ConformanceException("dom0: " + verdict);
    }

    private static async Task XD05Dom0(TwoDomainContext c)
    {
        var mb = c.Mailbox("XD05");
        try
        {
            var r = (await mb.WaitForAsync("refs")).Split(',').Select(x => uint.Parse(x, CultureInfo.InvariantCulture)).ToArray();
            uint good = r[0], elsewhere = r[1], readOnly = r[2];
            byte[] marker = Convert.FromHexString(await mb.WaitForAsync("marker"));
            var p = c.Process;
            int fd = Raw.Open(p, "/dev/xen/gntdev");
            try
            {
                // A ref granted to another domain: the map ioctl only records it; mmap is where it fails.
                Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [elsewhere], out ulong idx), "MAP_GRANT_REF of a ref granted to another domain");
                Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED), "mmap of a ref granted to another domain");
                Check.Ok(Raw.UnmapGrantRef(p, fd, idx, 1), "UNMAP_GRANT_REF of the unmapped map");
                // A ref number the domU never granted.
                Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [good + 4000], out idx), "MAP_GRANT_REF of an ungranted ref");
                Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED), "mmap of an ungranted ref");
                Check.Ok(Raw.UnmapGrantRef(p, fd, idx, 1), "UNMAP_GRANT_REF");
                // The right ref named with the wrong granter (dom0 itself): mmap fails too - unless dom0's own
                // table happens to hold a live self-grant with that number (a deferred end of an earlier
                // scenario's grant, seen once here); then it must show dom0's page, never the domU's.
                Check.Ok(Raw.MapGrantRef(p, fd, c.Self, [good], out idx), "MAP_GRANT_REF naming the wrong granter");
                long wrong = p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED);
                if (wrong >= 0)
                {
                    bool domUs = Raw.Mem(wrong, Raw.Page).StartsWith(marker);
                    Check.Ok(p.Munmap(wrong, Raw.Page), "munmap");
                    Check.True(!domUs, "naming the wrong granter never reaches the domU's page");
                    c.Observe?.Invoke($"XD05: dom0's own ref {good} was live (a self-grant), so naming dom0 as granter mapped dom0's page, not the domU's");
                }
                else Check.Errno(Errno.EINVAL, wrong, "mmap naming the wrong granter");
                Check.Ok(Raw.UnmapGrantRef(p, fd, idx, 1), "UNMAP_GRANT_REF");
                // A read-only grant: read-only mmap works, writable mmap fails.
                Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [readOnly], out idx), "MAP_GRANT_REF of a read-only grant");
                Check.Errno(Errno.EINVAL, p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "writable mmap of a read-only grant");
                Check.Ok(Raw.UnmapGrantRef(p, fd, idx, 1), "UNMAP_GRANT_REF");
                // Exports fail at once: the wrong ref, the wrong granter, a read-only grant (EX05).
                Check.Errno(Errno.EINVAL, Raw.Export(p, fd, c.Peer, [elsewhere], out _), "export of a ref granted to another domain");
                if (wrong >= 0)
                {
                    // dom0's own live self-grant of that number (seen above): exporting it is legitimate.
                    if (Raw.Export(p, fd, c.Self, [good], out int own) == 0)
                    {
                        Check.Ok(p.Close(own), "close the export of dom0's own grant");
                        Check.Errno(Errno.ENOENT, Raw.WaitReleased(p, fd, own, 60_000), "the export of dom0's own grant released");
                    }
                }
                else Check.Errno(Errno.EINVAL, Raw.Export(p, fd, c.Self, [good], out _), "export naming the wrong granter");
                Check.Errno(Errno.EINVAL, Raw.Export(p, fd, c.Peer, [readOnly], out _), "export of a read-only grant");
                // And the right one works.
                Check.Ok(Raw.MapGrantRef(p, fd, c.Peer, [good], out idx), "MAP_GRANT_REF of the right ref");
                long a = Check.Ok(p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ, Posix.MAP_SHARED), "mmap of the right ref");
                Check.True(Raw.Mem(a, Raw.Page).StartsWith(marker), "the right ref shows the domU's page");
                Check.Ok(p.Munmap(a, Raw.Page), "munmap");
                Check.Ok(Raw.UnmapGrantRef(p, fd, idx, 1), "UNMAP_GRANT_REF");
            }
            finally { p.Close(fd); }
            await mb.PostAsync("dom0-done", "ok");
        }
        catch (Exception e)
        {
            await mb.PostAsync("dom0-done", "FAIL " + e.Message);
            throw;
        }
    }

    // ------------------------------------------------------------------ XD03+XD04 (the domU is destroyed)

    private static async Task VictimDomU(TwoDomainContext c)
    {
        var mb = c.Mailbox("XD03");
        // XD04: map dom0's import refs and keep the mapping.
        var importRefs = ParseRefs(await mb.WaitForAsync("import-refs"));
        using var dev = GrantDevice.Open(c.Process);
        using var map = dev.Map(c.Peer, importRefs);
        Check.True(map.Memory.Span.StartsWith(Pattern("DOM0", 0)), "dom0's import seen in the domU");
        // XD03: grant pages to dom0 and keep them.
        using var sharer = GrantSharer.Open(c.Process);
        // Three pages: dom0 maps the first two; the third is granted but never mapped (GT11's probe).
        using var pages = sharer.Share(c.Peer, 3);
        for (int i = 0; i < 3; i++) Pattern("VICTIM", i).CopyTo(pages.Memory.Span[(i * Raw.Page)..]);
        await mb.PostAsync("refs", string.Join(",", pages.Refs.Select(r => r.Value)));
        // Held until dom0 destroys this domain (which ends this half).
        await mb.WaitForAsync("never");
    }

    private static async Task VictimDom0(TwoDomainContext c)
    {
        var mb = c.Mailbox("XD03");
        if (c.DestroyPeer is null || c.PeerExists is null) throw new ConformanceException("the context cannot destroy the peer domain");
        var p = c.Process;
        using var sharer = GrantSharer.Open(p);
        using var own = sharer.Share(c.Self, 1);
        Pattern("DOM0", 0).CopyTo(own.Memory.Span);
        using var dev = GrantDevice.Open(p);
        var local = dev.ExportDmaBuf(c.Self, own.Refs.ToArray());
        int key = local.Fd;
        Check.Ok(Raw.Import(p, dev.Fd, key, 1, c.Peer, out uint[] importRefs), "IMP_TO_REFS for the victim");
        await mb.PostAsync("import-refs", string.Join(",", importRefs));
        var all = ParseRefs(await mb.WaitForAsync("refs"));
        var refs = all[..2];
        var map = dev.Map(c.Peer, refs);
        var export = dev.ExportDmaBuf(c.Peer, refs);
        Check.True(map.Memory.Span.StartsWith(Pattern("VICTIM", 0)), "the victim's pages seen in dom0");

        await c.DestroyPeer();                                                       // XD03 / XD04: the domU dies

        // XD03: what dom0 holds of the dead domain lives on.
        for (int i = 0; i < 2; i++) Check.True(map.Memory.Span[(i * Raw.Page)..].StartsWith(Pattern("VICTIM", i)), $"page {i} still readable after the destroy");
        map.Memory.Span[Raw.Page + 2000] = 0x77;
        Check.Equal((byte)0x77, map.Memory.Span[Raw.Page + 2000], "still writable after the destroy");
        Check.Errno(Errno.ETIMEDOUT, Raw.WaitReleased(p, dev.Fd, export.Fd, 0), "the export is still alive");
        // GT11 as real Xen 4.17 showed it: a new map of a dying domain's grant works while another mapping
        // holds its page (one page with that mapping); a grant whose page nobody held fails at mmap.
        GrantMapOutcome held = ProbeDyingMap(p, c.Peer, all[0], Pattern("VICTIM", 0), map.Memory.Span[..Raw.Page]);
        GrantMapOutcome freed = ProbeDyingMap(p, c.Peer, all[2], Pattern("VICTIM", 2), []);
        c.Observe?.Invoke("GT11 new map of a dying domain's grant whose page dom0 still maps: " + held);
        c.Observe?.Invoke("GT11 new map of a dying domain's grant whose page nobody maps: " + freed);
        Check.True(held is { Mapped: true, SamePageAsLiveMapping: true, CopyStatus: GntSt.bad_domain }, "GT11: a new map of the dying domain's held page works and is that page; a copy from it is bad_domain: " + held);
        Check.True(freed is { FailedCall: "mmap", Errno: Errno.EINVAL, CopyStatus: GntSt.bad_page }, "GT11: a new map of the dying domain's unheld grant fails at mmap with EINVAL; a copy bad_page: " + freed);
        Check.True(await c.PeerExists(), "the domain lingers while dom0 maps its pages");
        // XD04: releasing the import the dead domain mapped.
        local.Close();
        Check.Ok(Raw.ImportRelease(p, dev.Fd, key), "IMP_RELEASE after the mapper died");
        Check.True(local.WaitForRelease(TimeSpan.FromSeconds(60)), "the local export released with the import");
        // Let go: the export releases, the mapping goes, then the domain is gone.
        export.Close();
        Check.True(export.WaitForRelease(TimeSpan.FromSeconds(60)), "the export of the dead domain's pages released at close");
        map.Dispose();
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (await c.PeerExists() && sw.Elapsed < TimeSpan.FromSeconds(60)) await Task.Delay(200);
        Check.True(!await c.PeerExists(), "the domain is gone once dom0 unmapped its last page");
        GrantMapOutcome gone = ProbeDyingMap(p, c.Peer, all[0], Pattern("VICTIM", 0), []);
        c.Observe?.Invoke("GT11 new map of a grant of the domain once it is gone: " + gone);
        Check.True(gone is { FailedCall: "mmap", Errno: Errno.EINVAL, CopyStatus: GntSt.bad_domain }, "GT11/XD05: once the domain is gone, mmap fails with EINVAL and a copy says bad_domain: " + gone);
    }

    /// <summary>Maps one grant of a dying domain in a fresh gntdev file and says what happened: which call failed
    /// with which errno, or what the page showed (the granted content, zeros, something else) and, when
    /// <paramref name="live"/> is dom0's existing mapping of the same grant, whether both are one page (a byte
    /// written through the new mapping is seen through the old one; written only when the contents agree).</summary>
    private static GrantMapOutcome ProbeDyingMap(IGuestProcess p, DomainId granter, GrantRef gref, byte[] granted, Span<byte> live)
    {
        short copy = CopyStatus(p, granter, gref);
        int fd = Raw.Open(p, "/dev/xen/gntdev");
        try
        {
            int rc = Raw.MapGrantRef(p, fd, granter, [gref.Value], out ulong idx);
            if (rc < 0) return new GrantMapOutcome("MAP_GRANT_REF", -rc, null, null, copy);
            try
            {
                long a = p.Mmap(fd, (long)idx, Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
                if (a < 0) return new GrantMapOutcome("mmap", (int)-a, null, null, copy);
                try
                {
                    var page = Raw.Mem(a, Raw.Page);
                    string content = !live.IsEmpty && page.SequenceEqual(live) ? "the same bytes as dom0's live mapping"
                        : page.StartsWith(granted) ? "the granted content"
                        : page.IndexOfAnyExcept((byte)0) < 0 ? "zeros" : "other content";
                    bool? same = null;
                    if (!live.IsEmpty && page.SequenceEqual(live))
                    {
                        byte before = page[3000];
                        page[3000] = (byte)(before ^ 0xA5);
                        same = live[3000] == page[3000];
                        page[3000] = before;
                    }
                    return new GrantMapOutcome(null, 0, content, same, copy);
                }
                finally { p.Munmap(a, Raw.Page); }
            }
            finally { Raw.UnmapGrantRef(p, fd, idx, 1); }
        }
        finally { p.Close(fd); }
    }

    /// <summary>The status Xen gives a grant copy of 16 bytes from the grant (GNTTABOP_copy names the GNTST code
    /// that gntdev's mmap turns into EINVAL).</summary>
    private static short CopyStatus(IGuestProcess p, DomainId granter, GrantRef gref)
    {
        using var dev = GrantDevice.Open(p);
        using var buf = ProcessBuffer.Allocate(p, Raw.Page);
        var status = new short[1];
        dev.Copy([new GrantCopySegment(GrantCopyOperand.Foreign(granter, gref, 0), GrantCopyOperand.Local(buf.Address), 16)], status);
        return status[0];
    }

    // ------------------------------------------------------------------ XD02

    private static async Task XD02DomU(TwoDomainContext c)
    {
        var mb = c.Mailbox("XD02");
        var refs = ParseRefs(await mb.WaitForAsync("refs"));
        using var dev = GrantDevice.Open(c.Process);
        using (var map = dev.Map(c.Peer, refs))
        {
            for (int i = 0; i < refs.Length; i++)
            {
                Check.True(map.Memory.Span[(i * Raw.Page)..].StartsWith(Pattern("DOM0", i)), $"page {i}: dom0's pattern seen in the domU");
                Pattern("DOMU", i).CopyTo(map.Memory.Span[(i * Raw.Page + 200)..]);
            }
            await mb.PostAsync("mapped", "ok");
            string released = await mb.WaitForAsync("released");
            if (released != "ok") throw new ConformanceException("dom0: " + released);
            for (int i = 0; i < refs.Length; i++)
                Check.True(map.Memory.Span[(i * Raw.Page)..].StartsWith(Pattern("DOM0", i)), $"page {i}: the mapping still works after IMP_RELEASE (EI09)");
        }
        await mb.PostAsync("unmapped", "ok");
    }

    private static async Task XD02Dom0(TwoDomainContext c)
    {
        var mb = c.Mailbox("XD02");
        try
        {
            // A local dma-buf: dom0 grants its own pages to itself, maps them back and exports them (the
            // stage's dom0 has no dma-heap).
            using var sharer = GrantSharer.Open(c.Process);
            using var pages = sharer.Share(c.Self, 2);
            for (int i = 0; i < 2; i++) Pattern("DOM0", i).CopyTo(pages.Memory.Span[(i * Raw.Page)..]);
            using var dev = GrantDevice.Open(c.Process);
            var buf = dev.ExportDmaBuf(c.Self, pages.Refs.ToArray());
            int key = buf.Fd;
            Check.Ok(Raw.Import(c.Process, dev.Fd, key, 2, c.Peer, out uint[] refs), "IMP_TO_REFS for the domU");
            await mb.PostAsync("refs", string.Join(",", refs));
            string mapped = await mb.WaitForAsync("mapped");
            if (mapped != "ok") throw new ConformanceException("domU: " + mapped);
            for (int i = 0; i < 2; i++)
                Check.True(pages.Memory.Span[(i * Raw.Page + 200)..].StartsWith(Pattern("DOMU", i)), $"page {i}: the domU's write seen in dom0's page");
            buf.Close();
            Check.Ok(Raw.ImportRelease(c.Process, dev.Fd, key), "IMP_RELEASE while the domU maps (EI09: 0)");
            await mb.PostAsync("released", "ok");
            string unmapped = await mb.WaitForAsync("unmapped");
            if (unmapped != "ok") throw new ConformanceException("domU: " + unmapped);
            Check.True(buf.WaitForRelease(TimeSpan.FromSeconds(60)), "the export released once the import went");
        }
        catch (Exception e)
        {
            await mb.PostAsync("released", "FAIL " + e.Message);
            throw;
        }
    }
}

/// <summary>What a new map of a dying domain's grant did (GT11): the call that failed and its errno, or what the
/// mapped page showed and whether it is the page dom0 already maps, and the status of a grant copy from it.</summary>
public sealed record GrantMapOutcome(string? FailedCall, int Errno, string? Content, bool? SamePageAsLiveMapping, short CopyStatus)
{
    /// <summary>Whether both calls succeeded.</summary>
    public bool Mapped => FailedCall is null;

    /// <summary>"mmap failed with EINVAL", or "mapped; shows ...; same page as dom0's mapping: True".</summary>
    public override string ToString() => (Mapped
        ? "mapped; shows " + Content + (SamePageAsLiveMapping is { } s ? "; one page with dom0's live mapping: " + s : "")
        : FailedCall + " failed with " + XenShare.Abi.Errno.Name(Errno)) + "; a grant copy from it: " + GntSt.Name(CopyStatus);
}

/// <summary>What a two-domain half runs against: its process, its domain and the other one, and the
/// xenstore mailbox both halves share.</summary>
public sealed class TwoDomainContext(IGuestProcess process, DomainId self, DomainId peer, DomainId domU, XenstoreClient xenstore)
{
    /// <summary>dom0's toolstack: destroys the peer domain (the victim scenarios; null where not allowed).</summary>
    public Func<Task>? DestroyPeer { get; init; }

    /// <summary>dom0's toolstack: whether the peer domain still exists (dying included).</summary>
    public Func<Task<bool>>? PeerExists { get; init; }

    /// <summary>Records a fact a scenario observed without asserting it (printed by the runner).</summary>
    public Action<string>? Observe { get; init; }

    /// <summary>The process of this half.</summary>
    public IGuestProcess Process { get; } = process;

    /// <summary>This half's domain.</summary>
    public DomainId Self { get; } = self;

    /// <summary>The other half's domain.</summary>
    public DomainId Peer { get; } = peer;

    /// <summary>A scenario's mailbox under the domU's data directory.</summary>
    public Mailbox Mailbox(string scenario) =>
        new(xenstore, $"/local/domain/{domU.Value.ToString(CultureInfo.InvariantCulture)}/data/xenshare-xd/{scenario}");
}

/// <summary>Keys written by one half and waited for (with a watch) by the other.</summary>
public sealed class Mailbox(XenstoreClient xenstore, string path)
{
    /// <summary>Writes a key.</summary>
    public Task PostAsync(string key, string value) => xenstore.WriteAsync(path + "/" + key, value);

    /// <summary>Waits until a key exists (it may already), then returns its value.</summary>
    public async Task<string> WaitForAsync(string key)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await foreach (var _ in xenstore.WatchAsync(path + "/" + key, "mailbox-" + key, cts.Token).ConfigureAwait(false))
        {
            var v = await xenstore.TryReadStringAsync(path + "/" + key, cts.Token).ConfigureAwait(false);
            if (v is not null) return v;
        }
        throw new ConformanceException($"no {key} in {path}");
    }
}
