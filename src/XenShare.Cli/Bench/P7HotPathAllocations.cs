using System.Globalization;
using System.Runtime.CompilerServices;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Cli.Bench;

/// <summary>
/// P7: managed bytes allocated per op on warmed hot paths, counted with
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/> around many iterations: a XenHost map+unmap batch,
/// a XenHost copy batch, the gntdev GRANT_COPY ioctl (segments in an anonymous mmap of the calling
/// process), a sync of a cached map attachment (the display device's FB_SYNC on the seam), and a flip through
/// the display device on the seam (typed API, ioctl,
/// driver, latch). gntdev MAP_GRANT_REF / UNMAP_GRANT_REF are left out: they create a map object by design;
/// the export cycle has its own budget (P7b).
/// The value is the worst path; the baseline is one <c>new object()</c> per op counted the same way
/// (it shows the counter works). Target: 0 bytes/op (ratio &lt;= 0).
/// </summary>
internal sealed class P7HotPathAllocations : BenchTarget
{
    private const int Batch = 256;
    private const int CopySegments = 64;
    private static object? s_sink;

    /// <inheritdoc/>
    public override string Id => "P7";

    /// <inheritdoc/>
    public override string Title => "managed allocation per op on warmed hot paths";

    /// <inheritdoc/>
    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fixture = new GrantFixture(Batch);
        var map = fixture.MapOps(0, Batch);
        var unmap = new GnttabUnmapGrantRef[Batch];
        var copy = fixture.CopyOps(0, Batch);
        byte[] ioctlArg = fixture.PrepareGrantCopyIoctl(0, CopySegments);
        int iterations = options.Scale(1000);

        double mapUnmap = BytesPerOp(options, iterations, () => fixture.MapUnmap(map, unmap));
        GrantFixture.CheckStatus(map);
        GrantFixture.CheckStatus(unmap);
        double xenCopy = BytesPerOp(options, iterations, () => fixture.Xen.Copy(fixture.Dom0, copy));
        GrantFixture.CheckStatus(copy);
        double ioctlCopy = BytesPerOp(options, iterations, () => GrantFixture.Check(fixture.GrantCopyIoctl(ioctlArg), "IOCTL_GNTDEV_GRANT_COPY"));
        fixture.CheckGrantCopySegments(CopySegments);
        double baseline = BytesPerOp(options, iterations, AllocateOne);
        double mapAttachment = MapAttachmentPath(options, Math.Max(50, iterations / 4));
        double flip = FlipPath(options, iterations);

        double worst = Math.Max(Math.Max(mapUnmap, Math.Max(xenCopy, ioctlCopy)), Math.Max(mapAttachment, flip));
        string what = string.Create(
            CultureInfo.InvariantCulture,
            $"managed bytes per op, worst of: XenHost map+unmap batch of {Batch} = {mapUnmap:0.##} B; XenHost copy batch of {Batch} x 4 KiB = {xenCopy:0.##} B; gntdev GRANT_COPY ioctl, {CopySegments} segments = {ioctlCopy:0.##} B; sync of a cached map attachment (display device) = {mapAttachment:0.##} B; flip through the display device = {flip:0.##} B (baseline: one new object() per op)");
        return BenchRow.Create(Id, what, worst, "B/op", baseline, "B/op new object()", BenchGoal.AtMostRatio(0));
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void AllocateOne() => s_sink = new object();

    /// <summary>A sync of a cached map attachment for the device (the display device's FB_SYNC through the seam: the
    /// attachment was mapped once at import and is reused; in place, so nothing is copied).</summary>
    private static double MapAttachmentPath(BenchOptions options, int iterations)
    {
        using var display = new DisplayRig(1);
        var fb = display.Framebuffers[0];
        return BytesPerOp(options, iterations, () => display.Device.Sync(fb));
    }

    /// <summary>Flips between two imported framebuffers through the display device of a driver domain.</summary>
    private static double FlipPath(BenchOptions options, int iterations)
    {
        using var display = new DisplayRig(2);
        var (fa, fb) = (display.Framebuffers[0], display.Framebuffers[1]);
        int n = 0;
        return BytesPerOp(options, iterations, () => display.Device.Flip((n++ & 1) == 0 ? fa : fb));
    }

    /// <summary>A driver domain with a display and <c>count</c> one-page WC exports of a guest's pages imported
    /// into it through the seam.</summary>
    private sealed class DisplayRig : IDisposable
    {
        private readonly DmaBufFixture _fx;
        private readonly XenShare.Api.GrantDevice _gnt;
        private readonly List<IDisposable> _owned = [];

        public DisplayRig(int count)
        {
            _fx = new DmaBufFixture(count, dom0Unpopulated: 4096, maxFds: 1024, driverDomain: true);
            _fx.Backend.AddDisplay();
            var backend = _fx.StartBackendProcess();
            _gnt = XenShare.Api.GrantDevice.Open(backend);
            Device = XenShare.Api.DisplayDevice.Open(backend);
            var refs = _fx.Refs();
            for (int i = 0; i < count; i++)
            {
                var export = _gnt.ExportDmaBuf(_fx.Guests[0].Id, refs.AsSpan(i, 1), XenShare.Api.DmaBufBacking.WriteCombine);
                _owned.Add(export);
                var fb = Device.Import(export.Fd, 32, 32, 128);
                _owned.Add(fb);
                Framebuffers.Add(fb);
            }
        }

        public XenShare.Api.DisplayDevice Device { get; }

        public List<XenShare.Api.ScanoutBuffer> Framebuffers { get; } = [];

        public void Dispose()
        {
            for (int i = _owned.Count - 1; i >= 0; i--) _owned[i].Dispose();
            Device.Dispose();
            _gnt.Dispose();
            _fx.Dispose();
        }
    }

    /// <summary>Median over repetitions of the bytes this thread allocated per call, after warm-up.</summary>
    private static double BytesPerOp(BenchOptions options, int iterations, Action op)
    {
        for (int i = 0; i < Math.Max(16, options.WarmupRepetitions * 16); i++) op();
        var perOp = new double[options.Repetitions];
        for (int r = 0; r < perOp.Length; r++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            for (int i = 0; i < iterations; i++) op();
            long after = GC.GetAllocatedBytesForCurrentThread();
            perOp[r] = (double)(after - before) / iterations;
        }

        GC.KeepAlive(s_sink);
        return Measure.Median(perOp);
    }
}
