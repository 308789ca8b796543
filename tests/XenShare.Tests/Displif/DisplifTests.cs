using System.Diagnostics;
using XenShare.Abi;
using XenShare.Displif;
using XenShare.Tests.Emulation;
using XenShare.Xenbus;
using XenShare.Xenstore;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Tests.Displif;

/// <summary>The displif backend and frontend (XenShare.Displif) on the emulator: dom0 serves a vdispl device
/// of the domU the way Linux 6.1's xen-drm-front uses it (the realxen README's sequence), pixels arrive
/// at the sink, both allocation modes, DBUF_DESTROY waits for the release, paced PG_FLIP events with ids
/// 0, 1, 2, ..., bad requests answered with errors (DP06), and reconnects. EmulatorTest checks after each
/// test that no fd, mapping, page, grant, port or xenstore connection leaked.</summary>
public sealed class DisplifTests : EmulatorTest
{
    private static readonly TimeSpan Patience = DisplifRig.Patience;

    private Task<DisplifRig> StartAsync(bool beAlloc = false, int connectors = 1, DisplifBackendOptions? options = null,
        IDisplaySink? sink = null, bool preferSourceRefs = false) =>
        DisplifRig.StartAsync(Host, Dom0, P0, DomU, 0, beAlloc, connectors, options, sink, preferSourceRefs);

    private async Task<(XenstoreClient Xs, DisplifFrontend Frontend)> ConnectAsync(bool writeVersion = true)
    {
        var xs = XenstoreClient.OpenXenbus(PU);
        using var cts = new CancellationTokenSource(Patience);
        var frontend = await DisplifFrontend.ConnectAsync(xs, PU, DomU.Id, 0, writeVersion, cts.Token);
        frontend.RequestTimeout = Patience;
        return (xs, frontend);
    }

    private static void Fill(DisplifBuffer buffer, byte seed)
    {
        Span<byte> p = buffer.Pixels;
        for (int i = 0; i < p.Length; i++) p[i] = (byte)(i * 7 + seed + (i >> 12));
    }

    private static byte[] Expected(DisplifBuffer buffer) => buffer.Pixels.ToArray();

    [Fact]
    public async Task DP01_XenstoreKeys_ToolstackBackendAndFrontend_WriteWhatDisplifHSays()
    {
        await using var rig = await StartAsync(connectors: 2);
        Assert.Equal("2", Host.Xenstore.Read(rig.BackendPath + "/versions"));
        var (xs, frontend) = await ConnectAsync();
        await using (xs)
        await using (frontend)
        {
            Assert.Equal("4", Host.Xenstore.Read(rig.BackendPath + "/state"));
            Assert.Equal("4", Host.Xenstore.Read(rig.FrontendPath + "/state"));
            Assert.Equal("2", Host.Xenstore.Read(rig.FrontendPath + "/version"));
            foreach (string c in new[] { "0", "1" })
                foreach (string key in new[] { "req-ring-ref", "req-event-channel", "evt-ring-ref", "evt-event-channel" })
                    Assert.True(uint.TryParse(Host.Xenstore.Read(rig.FrontendPath + "/" + c + "/" + key), out _), c + "/" + key);
            Assert.Equal([new DisplifConnector(0, 640, 480, "conn0"), new DisplifConnector(1, 800, 600, "conn1")], rig.Backend.Connectors);
            Assert.Equal(rig.Backend.Connectors, frontend.Connectors);
            Assert.False(rig.Backend.BackendAllocates);
            Assert.True(rig.Backend.IsConnected);
            await frontend.CloseAsync();
        }
        await rig.Log.WaitUntilAsync(l => l[^1] == "state 2", "InitWait after the close");
    }

    [Fact]
    public async Task DP03_DP04_DP05_TheSequenceOfLinuxFrontend_FrontendAllocated_PixelsArriveAtTheSink()
    {
        await using var rig = await StartAsync();
        var (xs, frontend) = await ConnectAsync(writeVersion: false);   // Linux 6.1 writes no version
        await using (xs)
        await using (frontend)
        {
            // modetest -s: create, attach, set_config (the present), set_config 0, detach, destroy.
            var buffer = await frontend.CreateBufferAsync(640, 480, 32);
            Assert.Equal(1228800, buffer.Size);
            Assert.Equal(300, buffer.PageCount);
            Fill(buffer, 1);
            var fb = await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24);
            Assert.Equal(1, rig.ImportSink!.AttachedCount);
            await frontend.SetConfigAsync(0, fb);
            var shown = rig.LastFrame();
            Assert.Equal((0, fb.Cookie), (shown.Connector, shown.Fb));
            Assert.Equal(Expected(buffer), shown.Pixels);
            Assert.Same(rig.ImportSink.ShownOn(0), rig.ImportSink.ShownOn(0));
            // dom0's self-import of pages it only maps from the domU cannot be mapped back (the grant names a
            // frame dom0 does not own), so the sink reads through the frontend's refs and says so.
            Assert.Equal(FramePath.SourceRefs, rig.ImportSink.LastPath);
            Assert.Equal(FramePath.SourceRefs, shown.Path);

            // modetest -v: a second buffer, flips alternating.
            var second = await frontend.CreateBufferAsync(640, 480, 32);
            Fill(second, 2);
            var fb2 = await frontend.AttachFramebufferAsync(second, DisplifPixelFormat.XR24);
            for (int i = 0; i < 4; i++)
            {
                var which = i % 2 == 0 ? fb2 : fb;
                await frontend.PageFlipAsync(0, which);
                Assert.Equal(Expected(which.Buffer), rig.LastFrame().Pixels);
            }
            Assert.Equal(4, frontend.EventsReceived(0));
            Assert.Equal(0, frontend.EventIdMismatches(0));

            await frontend.SetConfigAsync(0, null);
            Assert.Null(rig.ImportSink.ShownOn(0));
            await frontend.DetachFramebufferAsync(fb2);
            await frontend.DestroyBufferAsync(second);
            await frontend.DetachFramebufferAsync(fb);
            await frontend.DestroyBufferAsync(buffer);
            Assert.Equal((0, 0, 0), (rig.Backend.BufferCount, rig.Backend.FramebufferCount, rig.ImportSink.AttachedCount));

            var ops = rig.RequestsSnapshot();
            Assert.All(ops, r => Assert.Equal(0, r.Status));
            Assert.Equal(Enumerable.Range(0, ops.Count(r => r.Connector == 0)).Select(i => (ushort)i), ops.Where(r => r.Connector == 0).Select(r => r.Id));
            Assert.Equal(new byte[]
            {
                0x10, 0x12, 0x14, 0x10, 0x12, 0x15, 0x15, 0x15, 0x15, 0x14, 0x13, 0x11, 0x13, 0x11,
            }, ops.Select(r => r.Operation));
            await frontend.CloseAsync();
        }
        await rig.Log.WaitUntilAsync(l => l.Contains("disconnected PeerClosed") && l[^1] == "state 2", "InitWait after the close");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task DP03_BackendAllocated_BeAlloc_TheFrontendMapsTheBackendsRefs_PixelsArriveAtTheSink(bool preferSourceRefs)
    {
        await using var rig = await StartAsync(beAlloc: true, preferSourceRefs: preferSourceRefs);
        var (xs, frontend) = await ConnectAsync();
        await using (xs)
        await using (frontend)
        {
            Assert.True(frontend.BackendAllocates);
            var buffer = await frontend.CreateBackendBufferAsync(320, 200, 32);
            Assert.True(buffer.BackendAllocated);
            Assert.All(buffer.Refs, r => Assert.NotEqual(0u, r.Value));
            Fill(buffer, 3);
            var fb = await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.AR24);
            await frontend.SetConfigAsync(0, fb);
            Assert.Equal(Expected(buffer), rig.LastFrame().Pixels);
            // dom0's own pages: its self-import maps (the device path), unless the test asks for the fallback.
            Assert.Equal(preferSourceRefs ? FramePath.SourceRefs : FramePath.SelfImport, rig.LastFrame().Path);
            await frontend.PageFlipAsync(0, fb);
            await frontend.SetConfigAsync(0, null);
            await frontend.DetachFramebufferAsync(fb);
            await frontend.DestroyBufferAsync(buffer);
            Assert.Equal(0, rig.Backend.BufferCount);
            await frontend.CloseAsync();
        }
    }

    [Fact]
    public async Task DP03_FrontendAllocated_FallbackPath_ReadsTheFrontendsRefs_AndReportsIt()
    {
        await using var rig = await StartAsync(preferSourceRefs: true);
        var (xs, frontend) = await ConnectAsync();
        await using (xs)
        await using (frontend)
        {
            var buffer = await frontend.CreateBufferAsync(100, 50, 16);
            Fill(buffer, 4);
            var fb = await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.RG16);
            await frontend.SetConfigAsync(0, fb);
            Assert.Equal(FramePath.SourceRefs, rig.LastFrame().Path);
            Assert.Equal(Expected(buffer), rig.LastFrame().Pixels);
            await frontend.CloseAsync();   // teardown with a buffer and a framebuffer still held
        }
        await rig.Log.WaitUntilAsync(l => l.Contains("disconnected PeerClosed"), "the teardown");
        Assert.Equal(0, rig.ImportSink!.AttachedCount);
    }

    [Fact]
    public async Task DP04_DbufDestroy_IsAnsweredOnlyAfterTheRelease_AndAfterTheBudgetWithEBUSY()
    {
        var sink = new HoldingSink(P0);
        await using var rig = await StartAsync(sink: sink, options: new DisplifBackendOptions { DestroyAnswerBudget = Patience });
        var (xs, frontend) = await ConnectAsync();
        await using (xs)
        await using (frontend)
        {
            var buffer = await frontend.CreateBufferAsync(64, 64, 32);
            var fb = await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24);
            await frontend.SetConfigAsync(0, fb);
            await frontend.SetConfigAsync(0, null);
            await frontend.DetachFramebufferAsync(fb);
            Assert.Equal(1, sink.Held);                     // a slow importer still holds the dma-buf

            var destroy = frontend.DestroyBufferAsync(buffer);
            // The backend closed its fd and waits: no answer while the importer holds the buffer.
            var first = await Task.WhenAny(destroy, Task.Delay(TimeSpan.FromMilliseconds(300)));
            Assert.NotSame(destroy, first);
            Assert.DoesNotContain(rig.RequestsSnapshot(), r => r.Operation == DisplifAbi.XENDISPL_OP_DBUF_DESTROY);
            sink.LetGo();
            await destroy.WaitAsync(Patience);              // answered 0 after the release
            Assert.Equal(0, rig.RequestsSnapshot().Single(r => r.Operation == DisplifAbi.XENDISPL_OP_DBUF_DESTROY).Status);
            await frontend.CloseAsync();
        }
    }

    [Fact]
    public async Task DP04_DbufDestroy_PastTheBudget_AnswersEBUSY_TheReleaseCompletesLater_NothingLeaks()
    {
        var sink = new HoldingSink(P0);
        await using var rig = await StartAsync(sink: sink, options: new DisplifBackendOptions { DestroyAnswerBudget = TimeSpan.FromMilliseconds(100) });
        var (xs, frontend) = await ConnectAsync();
        await using (xs)
        await using (frontend)
        {
            var buffer = await frontend.CreateBufferAsync(64, 64, 32);
            var fb = await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24);
            await frontend.DetachFramebufferAsync(fb);
            var e = await Assert.ThrowsAsync<DisplifRequestException>(() => frontend.DestroyBufferAsync(buffer));
            Assert.Equal(-Errno.EBUSY, e.Status);
            Assert.Equal(0, rig.Backend.BufferCount);        // the cookie is free again
            Assert.Equal(1, rig.Backend.PendingReleaseCount);
            sink.LetGo();
            await frontend.CloseAsync();                     // the teardown waits for the late release
        }
    }

    [Fact]
    public async Task DP05_PageFlipEvents_HaveIds0_1_2_PerConnector_PacedByTheFrameInterval()
    {
        var interval = TimeSpan.FromMilliseconds(25);
        await using var rig = await StartAsync(connectors: 2, options: new DisplifBackendOptions { FrameInterval = interval });
        var (xs, frontend) = await ConnectAsync();
        await using (xs)
        await using (frontend)
        {
            var a = await frontend.CreateBufferAsync(64, 32, 32);
            var b = await frontend.CreateBufferAsync(80, 60, 32);
            var fa = await frontend.AttachFramebufferAsync(a, DisplifPixelFormat.XR24);
            var fbb = await frontend.AttachFramebufferAsync(b, DisplifPixelFormat.XR24);
            await frontend.SetConfigAsync(0, fa);
            await frontend.SetConfigAsync(1, fbb);
            var clock = Stopwatch.StartNew();
            const int Flips = 8;
            await Task.WhenAll(
                Task.Run(async () => { for (int i = 0; i < Flips; i++) await frontend.PageFlipAsync(0, fa); }),
                Task.Run(async () => { for (int i = 0; i < Flips; i++) await frontend.PageFlipAsync(1, fbb); }));
            clock.Stop();
            Assert.Equal((Flips, Flips), (frontend.EventsReceived(0), frontend.EventsReceived(1)));
            Assert.Equal((0, 0), (frontend.EventIdMismatches(0), frontend.EventIdMismatches(1)));
            Assert.True(clock.Elapsed >= interval * (Flips - 1) * 0.9, $"{Flips} flips took {clock.Elapsed}: not paced to {interval}");
            Assert.Contains(rig.RequestsSnapshot(), r => r.Connector == 1 && r.Operation == DisplifAbi.XENDISPL_OP_PG_FLIP);
            await frontend.CloseAsync();
        }
    }

    [Fact]
    public async Task DP05_GetEdid_FillsTheFrontendsBuffer_WithAValidBlockForTheResolution()
    {
        await using var rig = await StartAsync();
        var (xs, frontend) = await ConnectAsync();
        await using (xs)
        await using (frontend)
        {
            byte[] edid = await frontend.GetEdidAsync(0);
            Assert.Equal(128, edid.Length);
            Assert.Equal(new byte[] { 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0 }, edid[..8]);
            Assert.Equal(0, edid.Aggregate(0, (s, x) => (s + x) & 0xFF));
            Assert.Equal(640, edid[56] | ((edid[58] >> 4) << 8));
            Assert.Equal(480, edid[59] | ((edid[61] >> 4) << 8));
            await frontend.CloseAsync();
        }
    }

    [Fact]
    public async Task DP06_BadRequests_EachAnsweredWithAnError_AndNothingChanges()
    {
        await using var rig = await StartAsync(options: new DisplifBackendOptions { MaxBufferPages = 1024, FrameInterval = TimeSpan.Zero });
        var (xs, frontend) = await ConnectAsync();
        await using (xs)
        await using (frontend)
        {
            var good = await frontend.CreateBufferAsync(64, 64, 32);
            var goodFb = await frontend.AttachFramebufferAsync(good, DisplifPixelFormat.XR24);
            using var sharer = XenShare.Api.GrantSharer.Open(PU);
            using var data = sharer.Share(Dom0.Id, 4);
            using var dir = sharer.Share(Dom0.Id, 1);
            void SetWord(int i, uint v) => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(dir.Memory.Span)[i] = v;
            for (int i = 0; i < 4; i++) SetWord(1 + i, data.Refs[i].Value);

            xendispl_req Create(ulong cookie, uint w, uint h, uint bpp, uint size, uint directory, uint flags = 0)
            {
                var r = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_DBUF_CREATE };
                r.op.dbuf_create = new xendispl_dbuf_create_req { dbuf_cookie = cookie, width = w, height = h, bpp = bpp, buffer_sz = size, gref_directory = directory, flags = flags };
                return r;
            }
            xendispl_req Op(byte op, ulong cookie)
            {
                var r = new xendispl_req { operation = op };
                r.op.pg_flip.fb_cookie = cookie;   // every body starts with its cookie
                return r;
            }
            xendispl_req Attach(ulong dbuf, ulong fb, uint fourcc, uint w = 64, uint h = 64)
            {
                var r = new xendispl_req { operation = DisplifAbi.XENDISPL_OP_FB_ATTACH };
                r.op.fb_attach = new xendispl_fb_attach_req { dbuf_cookie = dbuf, fb_cookie = fb, width = w, height = h, pixel_format = fourcc };
                return r;
            }

            uint dirRef = dir.Refs[0].Value;
            var cases = new (string What, xendispl_req Request, int Status)[]
            {
                ("unknown operation", new xendispl_req { operation = 0x7F }, -95),
                ("reused dbuf cookie", Create(good.Cookie, 64, 64, 32, 16384, dirRef), -Errno.EEXIST),
                ("buffer_sz below width x height x bpp", Create(0xA1, 64, 64, 32, 8192, dirRef), -Errno.EINVAL),
                ("zero width", Create(0xA2, 0, 64, 32, 16384, dirRef), -Errno.EINVAL),
                ("odd bpp", Create(0xA3, 64, 64, 7, 16384, dirRef), -Errno.EINVAL),
                ("too many pages", Create(0xA4, 64, 64, 32, 1025 * 4096, dirRef), -Errno.E2BIG),
                ("oversized buffer_sz", Create(0xA5, 64, 64, 32, uint.MaxValue, dirRef), -Errno.E2BIG),
                ("directory ref not granted", Create(0xA6, 64, 64, 32, 16384, 9999), -Errno.EINVAL),
                ("directory ends early", Create(0xA7, 1024, 1024, 32, 1024 * 1024 * 4, dirRef), -Errno.EINVAL),
                ("REQ_ALLOC without be-alloc", Create(0xA8, 64, 64, 32, 16384, dirRef, DisplifAbi.XENDISPL_DBUF_FLG_REQ_ALLOC), -Errno.EINVAL),
                ("unknown flags", Create(0xA9, 64, 64, 32, 16384, dirRef, 0x80), -Errno.EINVAL),
                ("destroy unknown dbuf", Op(DisplifAbi.XENDISPL_OP_DBUF_DESTROY, 0xBAD), -Errno.ENOENT),
                ("attach to unknown dbuf", Attach(0xBAD, 0xF1, DisplifPixelFormat.XR24), -Errno.ENOENT),
                ("attach with reused fb cookie", Attach(good.Cookie, goodFb.Cookie, DisplifPixelFormat.XR24), -Errno.EEXIST),
                ("attach with unknown fourcc", Attach(good.Cookie, 0xF2, 0x20202020), -Errno.EINVAL),
                ("attach larger than the buffer", Attach(good.Cookie, 0xF3, DisplifPixelFormat.XR24, 65, 64), -Errno.EINVAL),
                ("detach unknown fb", Op(DisplifAbi.XENDISPL_OP_FB_DETACH, 0xBAD), -Errno.ENOENT),
                ("set_config unknown fb", Op(DisplifAbi.XENDISPL_OP_SET_CONFIG, 0xBAD), -Errno.ENOENT),
                ("pg_flip unknown fb", Op(DisplifAbi.XENDISPL_OP_PG_FLIP, 0xBAD), -Errno.ENOENT),
            };
            foreach (var (what, request, status) in cases)
            {
                var response = await frontend.SendRequestAsync(0, request);
                Assert.True(status == response.status, $"{what}: {response.status}, expected {status}");
                Assert.Equal(request.operation, response.operation);
                Assert.Equal((1, 1), (rig.Backend.BufferCount, rig.Backend.FramebufferCount));
            }

            // A directory naming data refs that are not granted to dom0: the export fails, nothing is kept.
            SetWord(2, 7777);
            var bad = await frontend.SendRequestAsync(0, Create(0xB1, 64, 16, 32, 4096 * 4, dirRef));
            Assert.True(bad.status < 0, "refs not granted: " + bad.status);
            Assert.Equal(1, rig.Backend.BufferCount);
            SetWord(2, data.Refs[1].Value);
            Assert.Equal(0, (await frontend.SendRequestAsync(0, Create(0xB2, 64, 16, 32, 4096 * 4, dirRef))).status);
            Assert.Equal(0, (await frontend.SendRequestAsync(0, Op(DisplifAbi.XENDISPL_OP_DBUF_DESTROY, 0xB2))).status);

            // The good buffer still works.
            await frontend.SetConfigAsync(0, goodFb);
            await frontend.PageFlipAsync(0, goodFb);
            Assert.Equal(XenbusState.Connected, await rig.Backend.Device.ReadStateAsync());
            await frontend.CloseAsync();
        }
    }

    [Fact]
    public async Task XB03_Reconnect_TheFrontendClosesAndComesBack_TheBackendServesTheNewInstance()
    {
        await using var rig = await StartAsync();
        for (int round = 0; round < 3; round++)
        {
            using var process = DomU.StartProcess();
            await using var xs = XenstoreClient.OpenXenbus(process);
            await using var frontend = await DisplifFrontend.ConnectAsync(xs, process, DomU.Id, 0);
            frontend.RequestTimeout = Patience;
            var buffer = await frontend.CreateBufferAsync(32, 32, 32);
            Fill(buffer, (byte)round);
            var fb = await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24);
            await frontend.PageFlipAsync(0, fb);
            Assert.Equal(Expected(buffer), rig.LastFrame().Pixels);
            Assert.Equal(1, frontend.EventsReceived(0));     // ids start at 0 again for each connection
            await frontend.CloseAsync();                     // a driver unload with the buffer still held
            await rig.Log.WaitForCountAsync("disconnected", round + 1);
        }
        await rig.Log.WaitUntilAsync(l => l[^1] == "state 2", "InitWait");
        Assert.Equal(0, rig.ImportSink!.AttachedCount);
    }
}
