using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Drivers;

namespace XenShare.Cli.Bench;

/// <summary>
/// P1: emulated grant map + unmap per page of a 256-page gntdev map, through the path gntdev itself takes
/// (<see cref="GrantFixture.GntDevUnmapMap"/>: the unmap UNMAP_GRANT_REF's last user runs, every grant in
/// one GNTTABOP_unmap_grant_ref batch, then gntdev_map_grant_pages, one GNTTABOP_map_grant_ref batch; domU's
/// grants into dom0's unpopulated GFNs), against copying one 4 KiB page with <c>Span.CopyTo</c> over a
/// 64 MiB working set (cold-ish). Target: ratio &lt;= 0.35.
/// </summary>
internal sealed unsafe class P1MapUnmap : BenchTarget
{
    /// <summary>Grants per gntdev map, so per hypercall batch.</summary>
    public const int Batch = 256;

    private const long WorkingSetBytes = 64L << 20;
    private const int WorkingSetPages = (int)(WorkingSetBytes / XenPage.Size);

    /// <inheritdoc/>
    public override string Id => "P1";

    /// <inheritdoc/>
    public override string Title => "gntdev grant map + unmap per page (maps of 256, one batch each way) vs copying a 4 KiB page";

    /// <inheritdoc/>
    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fixture = new GrantFixture(Batch);
        GrantMap map = fixture.PrepareGntDevMap(0, Batch);
        Check(GrantFixture.GntDevUnmapMap(map));
        int failed = 0;

        int batches = options.Scale(160);
        int copies = options.Scale(WorkingSetPages);
        byte* src = (byte*)NativeMemory.AlignedAlloc((nuint)WorkingSetBytes, XenPage.Size);
        byte* dst = (byte*)NativeMemory.AlignedAlloc((nuint)WorkingSetBytes, XenPage.Size);
        try
        {
            new Span<byte>(src, (int)WorkingSetBytes).Fill(0x5a);
            new Span<byte>(dst, (int)WorkingSetBytes).Clear();
            int next = 0;
            var (mapSeconds, copySeconds) = Measure.Interleaved(
                options,
                () =>
                {
                    for (int b = 0; b < batches; b++) failed |= GrantFixture.GntDevUnmapMap(map);
                },
                () =>
                {
                    // One page at a time, walking 64 MiB of source and 64 MiB of destination in order:
                    // larger than the caches (cold-ish), prefetch-friendly (a conservative baseline).
                    for (int i = 0; i < copies; i++)
                    {
                        next = (next + 1) & (WorkingSetPages - 1);
                        long at = (long)next * XenPage.Size;
                        new ReadOnlySpan<byte>(src + at, XenPage.Size).CopyTo(new Span<byte>(dst + at, XenPage.Size));
                    }
                });
            Check(failed);

            double mapNs = mapSeconds * 1e9 / ((double)batches * Batch);
            double copyNs = copySeconds * 1e9 / copies;
            return BenchRow.Create(
                Id,
                "grant map+unmap per page through gntdev (a 256-page map: one unmap batch, one map batch), vs Span.CopyTo of one 4 KiB page over a 64 MiB working set (in page order)",
                mapNs,
                "ns/page",
                copyNs,
                "ns/page copy",
                BenchGoal.AtMostRatio(0.35));
        }
        finally
        {
            NativeMemory.AlignedFree(src);
            NativeMemory.AlignedFree(dst);
        }
    }

    /// <summary>Throws unless every gntdev map of the run succeeded (checked outside timing).</summary>
    private static void Check(int rc)
    {
        if (rc != 0) throw new InvalidOperationException($"gntdev map of the grants failed: {Errno.Name(-rc)}");
    }
}
