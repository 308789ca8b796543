using XenShare.Abi;
using XenShare.Api;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Cli.Bench;

/// <summary>P2: export a 1080p XRGB frame (2025 refs, WC) + attach + map + detach + close + wait
/// released, vs one memcpy of the 8 MiB frame.</summary>
internal sealed class P2ExportFrame : BenchTarget
{
    public const int Pages = 2025;   // 1920 x 1080 x 4 bytes

    public override string Id => "P2";

    public override string Title => "export 1080p frame + attach + map + detach + close + wait, vs memcpy of the frame";

    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fx = new DmaBufFixture(Pages);
        var p0 = fx.StartDom0Process();
        using var gnt = GrantDevice.Open(p0);
        var refs = fx.Refs();
        var domU = fx.Guests[0].Id;
        var device = new DmaDevice(fx.Host.Dom0.Kernel, "scanout");
        var src = new byte[Pages * XenPage.Size];
        var dst = new byte[Pages * XenPage.Size];
        src.AsSpan().Fill(0x5a);
        int cycles = Math.Max(1, options.Scale(4));
        var (lifecycle, memcpy) = Measure.Interleaved(
            options,
            () =>
            {
                for (int c = 0; c < cycles; c++)
                {
                    var buf = gnt.ExportDmaBuf(domU, refs, DmaBufBacking.WriteCombine);
                    var obj = DmaBufObject.Get(p0, buf.Fd, out int e) ?? throw new InvalidOperationException($"get: {e}");
                    var att = obj.Attach(device, out e) ?? throw new InvalidOperationException($"attach: {e}");
                    var t = obj.MapAttachment(att, DmaDirection.ToDevice, out e) ?? throw new InvalidOperationException($"map: {e}");
                    if (t.Segments.Count != 1) throw new InvalidOperationException("WC export is not one segment");
                    obj.UnmapAttachment(att, t, DmaDirection.ToDevice);
                    obj.Detach(att);
                    obj.Put();
                    buf.Close();
                    if (!buf.WaitForRelease(TimeSpan.FromSeconds(30))) throw new InvalidOperationException("not released");
                }
            },
            () =>
            {
                for (int c = 0; c < cycles; c++) src.AsSpan().CopyTo(dst);
            });
        return BenchRow.Create(Id,
            "EXP_FROM_REFS (WC, 2025 refs) + attach + map (1 segment) + detach + close + EXP_WAIT_RELEASED, per frame, vs one 8 MiB memcpy",
            lifecycle / cycles * 1e6, "us/frame", memcpy / cycles * 1e6, "us memcpy", BenchGoal.AtMostRatio(0.25));
    }
}
