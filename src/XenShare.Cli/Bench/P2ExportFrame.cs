using XenShare.Abi;
using XenShare.Api;

namespace XenShare.Cli.Bench;

/// <summary>P2: export a 1080p XRGB frame (2025 refs, WC) + attach + map + detach + close + wait
/// released, vs one memcpy of the 8 MiB frame. The export and the display that attaches and maps it (through
/// its device file: FB_IMPORT is dma_buf_get + attach + map, FB_RELEASE unmap + detach + put) run in a display
/// driver domain, where a WC export of a guest's scattered pages is one segment (DM05); from a direct-mapped dom0
/// the map would fail with ENOMEM (DM04).</summary>
internal sealed class P2ExportFrame : BenchTarget
{
    public const int Pages = 2025;   // 1920 x 1080 x 4 bytes

    public override string Id => "P2";

    public override string Title => "export 1080p frame + attach + map + detach + close + wait, vs memcpy of the frame";

    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fx = new DmaBufFixture(Pages, driverDomain: true);
        fx.Backend.AddDisplay();
        var backend = fx.StartBackendProcess();
        using var gnt = GrantDevice.Open(backend);
        using var display = DisplayDevice.Open(backend);
        var refs = fx.Refs();
        var domU = fx.Guests[0].Id;
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
                    var fb = display.Import(buf.Fd, 1920, 1080, 1920 * 4);
                    if (fb.Segments != 1 || fb.BouncedBytes != 0) throw new InvalidOperationException("WC export is not one segment read in place");
                    fb.Dispose();
                    buf.Close();
                    if (!buf.WaitForRelease(TimeSpan.FromSeconds(30))) throw new InvalidOperationException("not released");
                }
            },
            () =>
            {
                for (int c = 0; c < cycles; c++) src.AsSpan().CopyTo(dst);
            });
        return BenchRow.Create(Id,
            "EXP_FROM_REFS (WC, 2025 refs) + attach + map (1 segment, in place) + detach through the display device + close + EXP_WAIT_RELEASED, in a display driver domain, per frame, vs one 8 MiB memcpy",
            lifecycle / cycles * 1e6, "us/frame", memcpy / cycles * 1e6, "us memcpy", BenchGoal.AtMostRatio(0.25));
    }
}
