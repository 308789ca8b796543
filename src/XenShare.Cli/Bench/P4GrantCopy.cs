using XenShare.Abi;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Cli.Bench;

/// <summary>
/// P4: grant copy bandwidth with 4 KiB segments (<see cref="XenHost.Copy"/>, source a domU grant ref,
/// destination a local dom0 frame, batches of 256) against copying the same bytes between the same
/// frames with <c>Span.CopyTo</c>. Target: ratio &gt;= 0.7.
/// </summary>
internal sealed class P4GrantCopy : BenchTarget
{
    /// <summary>Segments per hypercall batch.</summary>
    public const int Batch = 256;

    /// <summary>Pages in the working set (4 MiB source, 4 MiB destination).</summary>
    public const int WorkingSetPages = 1024;

    /// <inheritdoc/>
    public override string Id => "P4";

    /// <inheritdoc/>
    public override string Title => "grant copy bandwidth, 4 KiB segments, vs memcpy of the same bytes";

    /// <inheritdoc/>
    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var fixture = new GrantFixture(WorkingSetPages);
        var batches = new GnttabCopy[WorkingSetPages / Batch][];
        for (int b = 0; b < batches.Length; b++) batches[b] = fixture.CopyOps(b * Batch, Batch);

        // The baseline copies the very same machine frames.
        var srcFrames = new MachineFrame[WorkingSetPages];
        var dstFrames = new MachineFrame[WorkingSetPages];
        for (int i = 0; i < WorkingSetPages; i++)
        {
            srcFrames[i] = fixture.SourceFrame(i);
            dstFrames[i] = fixture.Dom0Frame(new GuestFrame(batches[i / Batch][i % Batch].Dest.RefOrGfn));
        }

        var memory = fixture.Xen.Memory;
        var dom0 = fixture.Dom0;
        var xen = fixture.Xen;
        int passes = options.Scale(24);
        var (copySeconds, memcpySeconds) = Measure.Interleaved(
            options,
            () =>
            {
                for (int p = 0; p < passes; p++)
                    foreach (var batch in batches) xen.Copy(dom0, batch);
            },
            () =>
            {
                for (int p = 0; p < passes; p++)
                    for (int i = 0; i < WorkingSetPages; i++) memory.FrameSpan(srcFrames[i]).CopyTo(memory.FrameSpan(dstFrames[i]));
            });
        foreach (var batch in batches) GrantFixture.CheckStatus(batch);
        if (!memory.FrameSpan(srcFrames[5]).SequenceEqual(memory.FrameSpan(dstFrames[5]))) throw new InvalidOperationException("grant copy moved the wrong bytes");

        double bytes = (double)passes * WorkingSetPages * XenPage.Size;
        return BenchRow.Create(
            Id,
            "GNTTABOP_copy bandwidth, 4 KiB segments (domU gref -> dom0 frame), XenHost batches of 256, 4 MiB working set, vs Span.CopyTo of the same frames",
            bytes / copySeconds / 1e9,
            "GB/s",
            bytes / memcpySeconds / 1e9,
            "GB/s memcpy",
            BenchGoal.AtLeastRatio(0.7));
    }
}
