using System.Globalization;
using XenShare.Api;
using XenShare.Cli.Demo;
using XenShare.Displif;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Xenstore;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Cli.Bench;

/// <summary>
/// P11: a displif page flip end to end on the emulated host, at 1080p, through the whole protocol stack as the
/// demo runs it: domU's <see cref="DisplifFrontend"/> sends PG_FLIP on the shared ring and notifies; dom0's
/// <see cref="DisplifBackend"/> ring thread wakes, takes the request, presents the framebuffer to a
/// <see cref="ScanoutSink"/> that only latches it in the scan-out engine (no scan-out, no PNG), answers,
/// notifies, and puts XENDISPL_EVT_PG_FLIP on the event page (frame pacing off:
/// <see cref="DisplifBackendOptions.FrameInterval"/> zero); the frontend's receiver thread takes the response
/// and the event and completes the flip's task, which the measuring thread waits on. Two frontend-allocated
/// framebuffers, exported once (WC) and imported once into the engine, alternate. Baseline: one memcpy of a
/// 1920x1080x4 frame, measured in the same run. Target: flip / memcpy &lt;= 0.01.
/// </summary>
internal sealed class P11DisplifFlip : BenchTarget
{
    private const int Width = 1920;
    private const int Height = 1080;

    /// <inheritdoc/>
    public override string Id => "P11";

    /// <inheritdoc/>
    public override string Title => "displif page flip end to end (frontend request -> backend -> latch -> flip event -> frontend) at 1080p vs one memcpy of the frame";

    /// <inheritdoc/>
    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return RunAsync(options).GetAwaiter().GetResult();
    }

    private async Task<BenchRow> RunAsync(BenchOptions options)
    {
        await using var fixture = await FlipFixture.StartAsync().ConfigureAwait(false);
        int flips = options.Scale(1000);
        var source = fixture.Pixels(0).ToArray();
        var copy = GC.AllocateUninitializedArray<byte>(source.Length);

        var (flipSeconds, memcpySeconds) = Measure.Interleaved(
            options,
            () => fixture.Flips(flips),
            () => source.AsSpan().CopyTo(copy));
        fixture.Check();

        double flipUs = flipSeconds / flips * 1e6;
        var c = CultureInfo.InvariantCulture;
        return BenchRow.Create(
            Id,
            string.Create(c, $"displif PG_FLIP end to end at {Width}x{Height} on the emulated host (DisplifFrontend request -> ring + evtchn -> DisplifBackend ring thread -> scan-out latch -> response + XENDISPL_EVT_PG_FLIP -> frontend thread -> flip task completes), pacing off, no PNG; vs one memcpy of a {Width}x{Height}x4 frame"),
            flipUs,
            "µs/flip",
            memcpySeconds * 1e6,
            "µs memcpy 1080p frame",
            BenchGoal.AtMostRatio(0.01));
    }

    /// <summary>An emulated host with a vdispl device served from a display driver domain (not direct-mapped, its
    /// display behind the SMMU: frontend-allocated 1080p buffers are one segment read in place there, DM05; a
    /// direct-mapped dom0 could not map them, DM04), its backend with a latch-only scan-out sink, and domU's
    /// frontend with two attached 1080p framebuffers, frame 0 shown.</summary>
    private sealed class FlipFixture : IAsyncDisposable
    {
        private readonly EmulatedHost _host;
        private readonly IGuestProcess _back;
        private readonly IGuestProcess _front;
        private readonly ScanoutSink _sink;
        private readonly CancellationTokenSource _stop = new();
        private XenstoreClient? _xs0;
        private XenstoreClient? _xsU;
        private DisplifBackend? _backend;
        private Task _backendRun = Task.CompletedTask;
        private DisplifFrontend? _frontend;
        private readonly List<DisplifBuffer> _buffers = [];
        private readonly List<DisplifFramebuffer> _framebuffers = [];
        private long _next;
        private long _flips;

        private FlipFixture()
        {
            int pages = 2 * Abi.XenPage.PagesFor(Width * Height * 4);
            var domU = new DomainConfig { RamPages = pages + 2048, MaxGrantFrames = Math.Max(64, (pages / 512) + 4) };
            var driverDomain = new DomainConfig { RamPages = pages + 4096, UnpopulatedPages = Math.Max(65536, pages + 1024) };
            _host = new EmulatedHost(domU.RamPages + driverDomain.RamPages + 4096 + 16384, new DomainConfig { RamPages = 4096 });
            var guest = _host.CreateGuest(domU, new KernelOptions { GntAllocLimit = pages + 64 });
            Guest = guest;
            Driver = _host.CreateGuest(driverDomain);
            _back = Driver.StartProcess();
            _front = guest.StartProcess();
            Driver.AddDisplay();
            _sink = new ScanoutSink(_back);
        }

        private EmulatedGuest Guest { get; }

        private EmulatedGuest Driver { get; }

        public static async Task<FlipFixture> StartAsync()
        {
            var f = new FlipFixture();
            try
            {
                await f.ConnectAsync().ConfigureAwait(false);
                return f;
            }
            catch
            {
                await f.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }

        private async Task ConnectAsync()
        {
            var (fe, _) = _host.AddDevice(Guest, Driver, DisplifAbi.XENDISPL_DRIVER_NAME, 0);
            Write(fe + "/" + DisplifAbi.XENDISPL_FIELD_BE_ALLOC, "0");
            Write(fe + "/0/" + DisplifAbi.XENDISPL_FIELD_RESOLUTION, string.Create(CultureInfo.InvariantCulture, $"{Width}x{Height}"));
            Write(fe + "/0/" + DisplifAbi.XENDISPL_FIELD_UNIQUE_ID, "p11");
            _xs0 = XenstoreClient.OpenXenbus(_back);
            _backend = await DisplifBackend.OpenAsync(_xs0, _back, Driver.Id, Guest.Id, 0, _sink,
                new DisplifBackendOptions { FrameInterval = TimeSpan.Zero, ExportBacking = DmaBufBacking.WriteCombine }).ConfigureAwait(false);
            _backendRun = _backend.RunAsync(_stop.Token);
            _xsU = XenstoreClient.OpenXenbus(_front);
            using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            _frontend = await DisplifFrontend.ConnectAsync(_xsU, _front, Guest.Id, 0, writeVersion: true, patience.Token).ConfigureAwait(false);
            for (int b = 0; b < 2; b++)
            {
                var buffer = await _frontend.CreateBufferAsync(Width, Height, 32).ConfigureAwait(false);
                TestPattern.Draw(buffer.Pixels, Width, Height, buffer.Pitch, b, b);
                _buffers.Add(buffer);
                _framebuffers.Add(await _frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24).ConfigureAwait(false));
            }
            await _frontend.SetConfigAsync(0, _framebuffers[0]).ConfigureAwait(false);
        }

        private void Write(string path, string value)
        {
            int rc = _host.Xenstore.Write(path, value);
            if (rc < 0) throw new InvalidOperationException($"P11: xenstore write of {path}: {rc}");
        }

        public ReadOnlySpan<byte> Pixels(int buffer) => _buffers[buffer].Pixels;

        /// <summary><paramref name="count"/> page flips alternating the two framebuffers, each waited for
        /// (request answered and flip event received) before the next.</summary>
        public void Flips(int count)
        {
            for (int i = 0; i < count; i++)
            {
                var fb = _framebuffers[(int)(++_next & 1)];
                _frontend!.PageFlipAsync(0, fb).GetAwaiter().GetResult();
            }
            _flips += count;
        }

        public void Check()
        {
            if (_sink.Stats().CpuBytesCopied != 0) throw new InvalidOperationException("P11: the flip path copied bytes");
            if (_sink.Presents != _flips + 1) throw new InvalidOperationException($"P11: {_sink.Presents} presents for {_flips} flips and one mode set");
            if (_sink.SegmentCounts.Any(s => s != 1)) throw new InvalidOperationException("P11: framebuffer not one segment");
            if (_frontend!.EventIdMismatches(0) != 0) throw new InvalidOperationException("P11: flip events out of order");
        }

        public async ValueTask DisposeAsync()
        {
            if (_frontend is not null)
            {
                using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(60));
                await _frontend.CloseAsync(patience.Token).ConfigureAwait(false);
            }
            await _stop.CancelAsync().ConfigureAwait(false);
            try
            {
                await _backendRun.ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
            }
            if (_backend is not null) await _backend.DisposeAsync().ConfigureAwait(false);
            _sink.Dispose();
            if (_xsU is not null) await _xsU.DisposeAsync().ConfigureAwait(false);
            if (_xs0 is not null) await _xs0.DisposeAsync().ConfigureAwait(false);
            _stop.Dispose();
            _front.Dispose();
            _back.Dispose();
            _host.Dispose();
        }
    }
}
