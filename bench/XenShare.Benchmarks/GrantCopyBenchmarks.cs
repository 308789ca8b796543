using BenchmarkDotNet.Attributes;
using XenShare.Cli.Bench;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Benchmarks;

/// <summary>P4 / P7 in detail: grant copy of 4 KiB segments (domU gref to a dom0 frame) through the
/// hypercall and through the gntdev GRANT_COPY ioctl (segments in an anonymous mmap of a dom0 process),
/// against copying the same frames directly. Per 4 KiB segment via OperationsPerInvoke.</summary>
[MemoryDiagnoser]
public class GrantCopyBenchmarks
{
    private const int Batch = 256;
    private GrantFixture _fixture = null!;
    private GnttabCopy[] _ops = null!;
    private byte[] _ioctlArg = null!;
    private MachineFrame[] _src = null!;
    private MachineFrame[] _dst = null!;

    [GlobalSetup]
    public void Setup()
    {
        _fixture = new GrantFixture(Batch);
        _ops = _fixture.CopyOps(0, Batch);
        _fixture.Xen.Copy(_fixture.Dom0, _ops);
        GrantFixture.CheckStatus(_ops);
        _ioctlArg = _fixture.PrepareGrantCopyIoctl(0, Batch);
        GrantFixture.Check(_fixture.GrantCopyIoctl(_ioctlArg), "IOCTL_GNTDEV_GRANT_COPY");
        _fixture.CheckGrantCopySegments(Batch);
        _src = new MachineFrame[Batch];
        _dst = new MachineFrame[Batch];
        for (int i = 0; i < Batch; i++)
        {
            _src[i] = _fixture.SourceFrame(i);
            _dst[i] = _fixture.Dom0Frame(new GuestFrame(_ops[i].Dest.RefOrGfn));
        }
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.Dispose();

    /// <summary>GNTTABOP_copy, batch of 256 x 4 KiB.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void HypercallCopy4KiB() => _fixture.Xen.Copy(_fixture.Dom0, _ops);

    /// <summary>IOCTL_GNTDEV_GRANT_COPY, 256 segments of 4 KiB.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public int GntDevGrantCopyIoctl4KiB() => _fixture.GrantCopyIoctl(_ioctlArg);

    /// <summary>Span.CopyTo of the same 256 frames.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Batch)]
    public void Memcpy4KiB()
    {
        var memory = _fixture.Xen.Memory;
        for (int i = 0; i < Batch; i++) memory.FrameSpan(_src[i]).CopyTo(memory.FrameSpan(_dst[i]));
    }
}
