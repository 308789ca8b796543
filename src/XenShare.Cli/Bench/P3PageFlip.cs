using System.Globalization;
using System.Runtime.CompilerServices;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Cli.Demo;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Rings;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Cli.Bench;

/// <summary>
/// P3: the steady-state page flip of the zero-copy display path at the seam, on framebuffers exported once as WC
/// dma-bufs and imported into the display device through the seam (<see cref="DisplayDevice"/>): the frontend pushes a displif PG_FLIP request
/// (<c>xendispl_req</c>) on a shared ring (<see cref="FrontRing"/>) and notifies; the backend takes the event,
/// unmasks, takes the request (<see cref="BackRing"/>), latches the framebuffer (<see cref="DisplayDevice.Flip"/>),
/// answers and notifies; the frontend takes the event and the response. One thread plays both sides, so no
/// thread hand-off is measured (P11 measures the whole protocol with its threads). No pixel is copied and no PNG is written. Measured at 1080p and at 4K against one memcpy of a 4K
/// frame. Value: flip cost at 4K; target: flip / memcpy &lt;= 0.01. The What text reports the flatness
/// (4K / 1080p flip cost), which should be near 1: a flip costs the same whatever the frame size.
/// </summary>
internal sealed class P3PageFlip : BenchTarget
{
    /// <inheritdoc/>
    public override string Id => "P3";

    /// <inheritdoc/>
    public override string Title => "page flip of an exported frame (ring + event + scan-out latch) at 1080p and 4K vs one memcpy of a 4K frame";

    /// <inheritdoc/>
    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fixture = new FlipFixture([(1920, 1080), (3840, 2160)]);
        int flips = options.Scale(2000);
        var frame4k = fixture.FrameSpanOf(1, 0);
        var copy = GC.AllocateUninitializedArray<byte>(frame4k.Length);
        frame4k.CopyTo(copy);

        var (flip4kSeconds, memcpySeconds) = Measure.Interleaved(
            options,
            () => fixture.Flips(1, flips),
            () => fixture.FrameSpanOf(1, 0).CopyTo(copy));
        var (flip1080Seconds, flip4kAgainSeconds) = Measure.Interleaved(
            options,
            () => fixture.Flips(0, flips),
            () => fixture.Flips(1, flips));
        fixture.Check();

        double flip4k = flip4kSeconds / flips;
        double flatness = flip4kAgainSeconds / flip1080Seconds;
        var c = CultureInfo.InvariantCulture;
        return BenchRow.Create(
            Id,
            string.Create(c, $"page flip of a WC-exported framebuffer (ring request + evtchn notify both ways + scan-out latch, no copy, no PNG), 4K; 1080p: {flip1080Seconds / flips * 1e6:0.0} µs, flatness 4K/1080p = {flatness:0.00} (flat ~ 1); vs one memcpy of a 3840x2160x4 frame"),
            flip4k * 1e6,
            "µs/flip",
            memcpySeconds * 1e6,
            "µs memcpy 4K frame",
            BenchGoal.AtMostRatio(0.01));
    }

    /// <summary>A frontend (domU) and a backend in a display driver domain (not direct-mapped, its display behind
    /// the SMMU: the setup where a WC export of a guest's scattered pages is one segment read in place, DM05;
    /// from a direct-mapped dom0 these 8 MB frames could not be mapped, DM04) with two framebuffers per size,
    /// exported, attached and flipped in one thread (each side's steps in order, so the measurement has no
    /// thread hand-off noise).</summary>
    private sealed class FlipFixture : IDisposable
    {
        private readonly EmulatedHost _host;
        private readonly IGuestProcess _front;
        private readonly IGuestProcess _back;
        private readonly EventChannels _frontEvents;
        private readonly EventChannels _backEvents;
        private readonly GrantSharer _sharer;
        private readonly GrantDevice _gnt;
        private readonly SharedPages _ringPage;
        private readonly GrantMapping _ringMap;
        private static readonly int EntrySize = Math.Max(Unsafe.SizeOf<xendispl_req>(), Unsafe.SizeOf<xendispl_resp>());
        private readonly FrontRing _frontRing;
        private readonly BackRing _backRing;
        private readonly EventPort _frontPort;
        private readonly EventPort _backPort;
        private readonly DisplayDevice _display;
        private readonly List<SharedPages> _pages = new();
        private readonly List<ExportedDmaBuf> _exports = new();
        private readonly ScanoutBuffer[][] _framebuffers;
        private readonly SharedPages[][] _buffers;
        private ulong _next;

        public FlipFixture((int Width, int Height)[] sizes)
        {
            int pages = 0;
            foreach (var (w, h) in sizes) pages += 2 * XenPage.PagesFor(w * h * 4);   // two buffers per size
            var domU = new DomainConfig { RamPages = pages + 2048, MaxGrantFrames = Math.Max(64, (pages / 512) + 4) };
            var driverDomain = new DomainConfig { RamPages = pages + 4096 };
            _host = new EmulatedHost(domU.RamPages + driverDomain.RamPages + 4096 + 16384, new DomainConfig { RamPages = 4096 });
            var guest = _host.CreateGuest(domU, new KernelOptions { GntAllocLimit = pages + 64 });
            var driver = _host.CreateGuest(driverDomain);
            _front = guest.StartProcess();
            _back = driver.StartProcess();
            _frontEvents = EventChannels.Open(_front);
            _backEvents = EventChannels.Open(_back);
            _sharer = GrantSharer.Open(_front);
            _gnt = GrantDevice.Open(_back);
            _ringPage = _sharer.Share(driver.Id, 1);
            _ringPage.Memory.Span.Clear();
            _frontRing = FrontRing.Initialize(_ringPage.Address, XenPage.Size, EntrySize);
            _ringMap = _gnt.Map(guest.Id, [_ringPage.Refs[0]]);
            _backRing = new BackRing(_ringMap.Address, XenPage.Size, EntrySize);
            _frontPort = _frontEvents.BindUnbound(driver.Id);
            _backPort = _backEvents.BindInterdomain(guest.Id, _frontPort);
            driver.AddDisplay();
            _display = DisplayDevice.Open(_back);
            _framebuffers = new ScanoutBuffer[sizes.Length][];
            _buffers = new SharedPages[sizes.Length][];
            for (int s = 0; s < sizes.Length; s++)
            {
                var (w, h) = sizes[s];
                _framebuffers[s] = new ScanoutBuffer[2];
                _buffers[s] = new SharedPages[2];
                for (int b = 0; b < 2; b++)
                {
                    var shared = _sharer.Share(driver.Id, XenPage.PagesFor(w * h * 4));
                    _pages.Add(shared);
                    _buffers[s][b] = shared;
                    TestPattern.Draw(shared.Memory.Span, w, h, w * 4, b, b);
                    var export = _gnt.ExportDmaBuf(guest.Id, shared.Refs, DmaBufBacking.WriteCombine);
                    _exports.Add(export);
                    _framebuffers[s][b] = _display.Import(export.Fd, w, h, w * 4);
                }
            }
        }

        public Span<byte> FrameSpanOf(int size, int buffer) => _buffers[size][buffer].Memory.Span;

        /// <summary><paramref name="count"/> flips alternating the two framebuffers of size <paramref name="size"/>.</summary>
        public void Flips(int size, int count)
        {
            var fbs = _framebuffers[size];
            for (int i = 0; i < count; i++)
            {
                ulong id = _next++;
                int b = (int)(id & 1);
                // Frontend: request + notify.
                var flip = new xendispl_req { id = (ushort)id, operation = DisplifAbi.XENDISPL_OP_PG_FLIP };
                flip.op.pg_flip.fb_cookie = (ulong)b;
                _frontRing.WriteRequest(in flip);
                _frontRing.PushRequests();
                _frontEvents.Notify(_frontPort);
                // Backend: event, request, flip, response + notify.
                var port = _backEvents.WaitPending(TimeSpan.FromSeconds(10)) ?? throw new InvalidOperationException("P3: no event at the backend");
                _backEvents.Unmask(port);
                if (!_backRing.TryConsumeRequest(out xendispl_req request)) throw new InvalidOperationException("P3: no request");
                _display.Flip(fbs[(int)request.op.pg_flip.fb_cookie]);
                _backRing.WriteResponse(new xendispl_resp { id = request.id, operation = request.operation, status = 0 });
                _backRing.PushResponses();
                _backEvents.Notify(_backPort);
                // Frontend: event, response.
                port = _frontEvents.WaitPending(TimeSpan.FromSeconds(10)) ?? throw new InvalidOperationException("P3: no event at the frontend");
                _frontEvents.Unmask(port);
                if (!_frontRing.TryConsumeResponse(out xendispl_resp response) || response.id != (ushort)id) throw new InvalidOperationException("P3: wrong response");
            }
        }

        /// <summary>After the measurement: the display scans the last flipped frame out, which must be read in place
        /// (a zero-copy frame, no byte copied by the CPU) and show the pixels the frontend drew; fails when a copy
        /// happened anywhere on the display path.</summary>
        public void Check()
        {
            foreach (var fbs in _framebuffers)
                foreach (var fb in fbs)
                {
                    if (fb.Segments != 1) throw new InvalidOperationException("P3: framebuffer not one segment");
                    if (fb.BouncedBytes != 0) throw new InvalidOperationException("P3: a framebuffer is reached through a bounce buffer");
                }
            var before = _display.Stats();
            int last = (int)((_next - 1) & 1);
            var fb4k = _framebuffers[1][last];
            _display.Flip(fb4k);
            var frame = new byte[fb4k.FrameBytes];
            _display.ReadFrame(frame);
            var after = _display.Stats();
            if (after.ZeroCopyFrames != before.ZeroCopyFrames + 1) throw new InvalidOperationException("P3: the scan-out did not read the frame in place");
            if (after.CpuBytesCopied != 0) throw new InvalidOperationException("P3: the display path copied bytes");
            if (!frame.AsSpan().SequenceEqual(FrameSpanOf(1, last))) throw new InvalidOperationException("P3: the scanned-out frame is not what the frontend drew");
        }

        public void Dispose()
        {
            foreach (var fbs in _framebuffers)
                foreach (var fb in fbs) fb.Dispose();
            _display.Dispose();
            foreach (var e in _exports) e.Dispose();
            foreach (var e in _exports) e.WaitForRelease(TimeSpan.FromSeconds(30));
            _ringMap.Dispose();
            foreach (var p in _pages) p.Dispose();
            _ringPage.Dispose();
            _gnt.Dispose();
            _sharer.Dispose();
            _backEvents.Dispose();
            _frontEvents.Dispose();
            _front.Dispose();
            _back.Dispose();
            _host.Dispose();
        }
    }
}
