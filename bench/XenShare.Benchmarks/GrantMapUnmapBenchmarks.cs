using BenchmarkDotNet.Attributes;
using XenShare.Cli.Bench;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Benchmarks;

/// <summary>P1 in detail: XenHost grant map + unmap of a batch of 256 domU grants into unpopulated dom0
/// GFNs (per page, via OperationsPerInvoke), against copying one 4 KiB page. P7: MemoryDiagnoser must
/// show 0 B allocated.</summary>
[MemoryDiagnoser]
public class GrantMapUnmapBenchmarks
{
    private const int Batch = 256;
    private GrantFixture _fixture = null!;
    private GnttabMapGrantRef[] _map = null!;
    private GnttabUnmapGrantRef[] _unmap = null!;
    private byte[] _src = null!;
    private byte[] _dst = null!;

    [GlobalSetup]
    public void Setup()
    {
        _fixture = new GrantFixture(Batch);
        _map = _fixture.MapOps(0, Batch);
        _unmap = new GnttabUnmapGrantRef[Batch];
        _fixture.MapUnmap(_map, _unmap);
        GrantFixture.CheckStatus(_map);
        GrantFixture.CheckStatus(_unmap);
        _src = new byte[4096];
        _dst = new byte[4096];
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.Dispose();

    /// <summary>Map + unmap per page, batches of 256.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void MapUnmapBatch256() => _fixture.MapUnmap(_map, _unmap);

    /// <summary>Copy one (cache-hot) 4 KiB page.</summary>
    [Benchmark(Baseline = true)]
    public void CopyPage4KiB() => _src.AsSpan().CopyTo(_dst);
}
