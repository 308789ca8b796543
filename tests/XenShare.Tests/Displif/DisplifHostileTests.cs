using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Displif;
using XenShare.Emulation.Hypervisor;
using XenShare.Tests.Emulation;
using XenShare.Xenbus;
using XenShare.Xenstore;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Tests.Displif;

/// <summary>Hostile and dying frontends against the displif backend (DP06, RG04, XB03): garbage requests,
/// wrong refs and cookies, oversized sizes, ring indexes far ahead, a frontend domain destroyed in the
/// middle of a stream. The backend never crashes, answers every request it reads, leaks nothing (the
/// base class's checks) and keeps serving other devices and new frontends.</summary>
public sealed class DisplifHostileTests : EmulatorTest
{
    private static readonly TimeSpan Patience = DisplifRig.Patience;

    private async Task<(XenstoreClient, DisplifFrontend)> ConnectAsync(IGuestProcess process, DomainId self)
    {
        var xs = XenstoreClient.OpenXenbus(process);
        var frontend = await DisplifFrontend.ConnectAsync(xs, process, self, 0);
        frontend.RequestTimeout = Patience;
        return (xs, frontend);
    }

    [Fact]
    public async Task RG04_RequestIndexFarAhead_TheBackendClosesTheDevice_ReleasesEverything_ThenServesANewFrontend()
    {
        await using var rig = await DisplifRig.StartAsync(Host, Dom0, P0, DomU);
        var (xs, frontend) = await ConnectAsync(PU, DomU.Id);
        await using (xs)
        await using (frontend)
        {
            var buffer = await frontend.CreateBufferAsync(64, 64, 32);
            var fb = await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24);
            await frontend.SetConfigAsync(0, fb);

            // The frontend publishes a req_prod far beyond the ring (RG04).
            MemoryMarshal.Write(GuestMemory.AsSpan(frontend.RingAddress(0), 4), 0x7F7F7F7Fu);
            await rig.Log.WaitUntilAsync(l => l.Contains("faulted RingProtocolException") && l.Contains("state 5"), "the backend closing the device");
            Assert.Equal("5", Host.Xenstore.Read(rig.BackendPath + "/state"));
            Assert.IsType<XenShare.Rings.RingProtocolException>(rig.Backend.LastFault);
            Assert.Equal((0, 0), (rig.Backend.BufferCount, rig.ImportSink!.AttachedCount));   // torn down at once

            await frontend.CloseAsync();
        }
        await rig.Log.WaitUntilAsync(l => l.Contains("disconnected PeerClosed") && l[^1] == "state 2", "InitWait after the frontend closed");

        using var process = DomU.StartProcess();
        var (xs2, again) = await ConnectAsync(process, DomU.Id);
        await using (xs2)
        await using (again)
        {
            var buffer = await again.CreateBufferAsync(16, 16, 32);
            var fb = await again.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24);
            await again.PageFlipAsync(0, fb);
            await again.CloseAsync();
        }
        // This process is not one the after-test check waits for: its xenstore reader may still be returning
        // from read(2) on the closed xenbus file (which holds the file until then).
        Assert.True(process.WaitIdle(Patience), "a syscall of the second frontend process is still in progress");
    }

    [Fact]
    public async Task DP06_Fuzz_RandomAndGarbageRequests_EveryOneAnswered_NothingLeaks_TheBackendKeepsServing()
    {
        await using var rig = await DisplifRig.StartAsync(Host, Dom0, P0, DomU,
            options: new DisplifBackendOptions { MaxBufferPages = 64, MaxBuffers = 8, MaxFramebuffers = 8, FrameInterval = TimeSpan.Zero });
        var (xs, frontend) = await ConnectAsync(PU, DomU.Id);
        await using (xs)
        await using (frontend)
        {
            using var sharer = GrantSharer.Open(PU);
            using var data = sharer.Share(Dom0.Id, 16);
            using var dir = sharer.Share(Dom0.Id, 2);
            var rng = new Random(1234);
            void Directory()
            {
                Span<uint> w = MemoryMarshal.Cast<byte, uint>(dir.Memory.Span);
                w[0] = rng.Next(4) == 0 ? dir.Refs[1].Value : 0;                    // sometimes chained, sometimes looped
                w[1024] = rng.Next(2) == 0 ? dir.Refs[0].Value : (uint)rng.Next(1 << 20);
                for (int i = 0; i < 16; i++)
                    w[1 + i] = rng.Next(10) == 0 ? (uint)rng.Next() : data.Refs[rng.Next(16)].Value;   // wrong refs now and then
            }

            var cookies = new List<ulong> { 0, 1, 0xBAD };
            ulong Cookie() => rng.Next(3) == 0 ? (ulong)rng.NextInt64() : cookies[rng.Next(cookies.Count)];
            uint[] fourccs = [DisplifPixelFormat.XR24, DisplifPixelFormat.RG16, DisplifPixelFormat.YUYV, 0, 0x34325258 + 1];

            for (int round = 0; round < 600; round++)
            {
                var request = new xendispl_req();
                byte op = (byte)(0x10 + rng.Next(8));
                request.operation = rng.Next(20) == 0 ? (byte)rng.Next(256) : op;
                switch (request.operation)
                {
                    case DisplifAbi.XENDISPL_OP_DBUF_CREATE:
                        Directory();
                        ulong c = (ulong)rng.Next(1, 40);
                        cookies.Add(c);
                        uint w = (uint)rng.Next(0, 300), h = (uint)rng.Next(0, 300), bpp = (uint)(rng.Next(5) * 8);
                        uint size = rng.Next(6) switch
                        {
                            0 => (uint)rng.Next(),
                            1 => uint.MaxValue,
                            _ => (uint)Math.Min(16 * 4096, (w * bpp / 8) * h + (uint)rng.Next(3) * 4096),
                        };
                        request.op.dbuf_create = new xendispl_dbuf_create_req
                        {
                            dbuf_cookie = c, width = w, height = h, bpp = bpp, buffer_sz = size,
                            gref_directory = rng.Next(8) == 0 ? (uint)rng.Next(100000) : dir.Refs[0].Value,
                            flags = rng.Next(10) == 0 ? (uint)rng.Next() : 0, data_ofs = rng.Next(10) == 0 ? (uint)rng.Next() : 0,
                        };
                        break;
                    case DisplifAbi.XENDISPL_OP_FB_ATTACH:
                        ulong f = (ulong)rng.Next(100, 140);
                        cookies.Add(f);
                        request.op.fb_attach = new xendispl_fb_attach_req
                        {
                            dbuf_cookie = Cookie(), fb_cookie = f, width = (uint)rng.Next(0, 300), height = (uint)rng.Next(0, 300),
                            pixel_format = fourccs[rng.Next(fourccs.Length)],
                        };
                        break;
                    case DisplifAbi.XENDISPL_OP_SET_CONFIG:
                        request.op.set_config = new xendispl_set_config_req
                        {
                            fb_cookie = rng.Next(4) == 0 ? 0 : Cookie(), x = (uint)rng.Next(3), y = (uint)rng.Next(3),
                            width = (uint)rng.Next(0, 300), height = (uint)rng.Next(0, 300), bpp = 32,
                        };
                        break;
                    case DisplifAbi.XENDISPL_OP_GET_EDID:
                        Directory();
                        request.op.get_edid = new xendispl_get_edid_req
                        {
                            buffer_sz = (uint)(rng.Next(3) == 0 ? rng.Next() : rng.Next(0, 3 * 4096)),
                            gref_directory = rng.Next(4) == 0 ? (uint)rng.Next(100000) : dir.Refs[0].Value,
                        };
                        break;
                    default:
                        request.op.pg_flip.fb_cookie = Cookie();   // DESTROY, DETACH, FLIP: a cookie, maybe unknown
                        Span<byte> rest = MemoryMarshal.AsBytes(new Span<xendispl_req>(ref request))[16..];
                        if (request.operation > 0x16) rng.NextBytes(rest);   // garbage bodies for unknown operations
                        break;
                }

                var response = await frontend.SendRequestAsync(0, request);
                Assert.Equal(request.operation, response.operation);
                Assert.True(response.status <= 0, $"round {round}: status {response.status}");
                Assert.True(rig.Backend.BufferCount <= 8 && rig.Backend.FramebufferCount <= 8);
            }

            Assert.Null(rig.Backend.LastFault);
            Assert.Equal(XenbusState.Connected, await rig.Backend.Device.ReadStateAsync());
            Assert.Contains(rig.RequestsSnapshot(), r => r.Operation == DisplifAbi.XENDISPL_OP_DBUF_CREATE && r.Status == 0);
            Assert.Contains(rig.RequestsSnapshot(), r => r.Operation == DisplifAbi.XENDISPL_OP_FB_ATTACH && r.Status == 0);

            // Still serving: a proper sequence on the same connection.
            var good = await frontend.CreateBufferAsync(32, 32, 32);
            var goodFb = await frontend.AttachFramebufferAsync(good, DisplifPixelFormat.XR24);
            await frontend.SetConfigAsync(0, goodFb);
            await frontend.PageFlipAsync(0, goodFb);
            await frontend.CloseAsync();   // the teardown releases whatever the fuzz left
        }
        await rig.Log.WaitUntilAsync(l => l.Contains("disconnected PeerClosed"), "the teardown");
        Assert.Equal(0, rig.ImportSink!.AttachedCount);
    }

    [Fact]
    public async Task XB03_FrontendDomainDiesMidStream_TheBackendReleasesEverything_AndKeepsServingAnotherDevice()
    {
        var victim = Host.CreateGuest(new DomainConfig { RamPages = 2048, UnpopulatedPages = 1024 });
        var vp = victim.StartProcess();
        await using var survivorRig = await DisplifRig.StartAsync(Host, Dom0, P0, DomU);
        await using var victimRig = await DisplifRig.StartAsync(Host, Dom0, P0, victim, beAlloc: true);

        var (xs, survivor) = await ConnectAsync(PU, DomU.Id);
        await using (xs)
        await using (survivor)
        {
            var sb = await survivor.CreateBufferAsync(32, 32, 32);
            var sfb = await survivor.AttachFramebufferAsync(sb, DisplifPixelFormat.XR24);

            var xsV = XenstoreClient.OpenXenbus(vp);
            var doomed = await DisplifFrontend.ConnectAsync(xsV, vp, victim.Id, 0);
            doomed.RequestTimeout = Patience;
            var vb = await doomed.CreateBufferAsync(64, 64, 32);
            var vb2 = await doomed.CreateBackendBufferAsync(64, 64, 32);   // the dying domain maps dom0's pages too
            var vfb2 = await doomed.AttachFramebufferAsync(vb2, DisplifPixelFormat.XR24);
            var vfb = await doomed.AttachFramebufferAsync(vb, DisplifPixelFormat.XR24);
            await doomed.SetConfigAsync(0, vfb);
            using var stop = new CancellationTokenSource();
            var stream = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested) await doomed.PageFlipAsync(0, vfb, stop.Token);
            });
            await victimRig.Log.WaitForCountAsync("frame", 5);   // mid-stream

            Host.KillGuest(victim);
            await victimRig.Log.WaitUntilAsync(l => l.Any(i => i is "disconnected PeerDomainDied" or "disconnected PeerVanished"), "the teardown after the death");
            Assert.Equal((0, 0), (victimRig.Backend.BufferCount, victimRig.ImportSink!.AttachedCount));
            await stop.CancelAsync();
            await Assert.ThrowsAnyAsync<Exception>(() => stream.WaitAsync(Patience));

            // The other device is served as before.
            await survivor.SetConfigAsync(0, sfb);
            await survivor.PageFlipAsync(0, sfb);
            Assert.Equal(0, survivor.EventIdMismatches(0));
            await victimRig.Log.WaitUntilAsync(l => l[^1] == "state 2", "InitWait for the next frontend");
            Assert.Equal(0, Xen.ZombieCount);                 // dom0 let go of every page of the dead domain

            // What is left of the dead guest's side (its calls fail with EIO now).
            try { await doomed.DisposeAsync(); } catch (Exception e) when (e is not OutOfMemoryException) { }
            try { await xsV.DisposeAsync(); } catch (Exception e) when (e is not OutOfMemoryException) { }
            vp.Dispose();
            await survivor.CloseAsync();
        }
    }
}
