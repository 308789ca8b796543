using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Cli.Bench;

/// <summary>
/// P1: emulated grant map + unmap per page, in batches of 256 (<see cref="XenHost.MapGrantRefs"/> then
/// <see cref="XenHost.UnmapGrantRefs"/>: domU's grants into unpopulated dom0 GFNs), against copying one
/// 4 KiB page with <c>Span.CopyTo</c> over a 64 MiB working set in a scattered order (cold-ish).
/// Target: ratio &lt;= 0.35.
/// </summary>
internal sealed unsafe class P1MapUnmap : BenchTarget
{
    /// <summary>Grants per hypercall batch.</summary>
    public const int Batch = 256;

    private const long WorkingSetBytes = 64L << 20;
    private const int WorkingSetPages = (int)(WorkingSetBytes / XenPage.Size);

    /// <inheritdoc/>
    public override string Id => "P1";

    /// <inheritdoc/>
    public override string Title => "grant map + unmap per page (batches of 256) vs copying a 4 KiB page";

    /// <inheritdoc/>
    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fixture = new GrantFixture(Batch);
        var map = fixture.MapOps(0, Batch);
        var unmap = new GnttabUnmapGrantRef[Batch];
        fixture.MapUnmap(map, unmap);
        GrantFixture.CheckStatus(map);
        GrantFixture.CheckStatus(unmap);

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
                    for (int b = 0; b < batches; b++) fixture.MapUnmap(map, unmap);
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
            GrantFixture.CheckStatus(map);
            GrantFixture.CheckStatus(unmap);

            double mapNs = mapSeconds * 1e9 / ((double)batches * Batch);
            double copyNs = copySeconds * 1e9 / copies;
            return BenchRow.Create(
                Id,
                "grant map+unmap per page, XenHost batches of 256, vs Span.CopyTo of one 4 KiB page over a 64 MiB working set (in page order)",
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
}
