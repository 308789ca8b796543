using BenchmarkDotNet.Attributes;
using XenShare.Cli.Bench;
using XenShare.Emulation.Drivers;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Benchmarks;

/// <summary>P1 in detail: grant map + unmap of 256 domU grants into unpopulated dom0 GFNs (per page, via
/// OperationsPerInvoke) through gntdev's own path (a 256-page gntdev map: one unmap batch, one map batch;
/// what P1 measures) and as bare XenHost batches, against copying one 4 KiB page. P7: MemoryDiagnoser
/// must show 0 B allocated.</summary>
[MemoryDiagnoser]
public class GrantMapUnmapBenchmarks
{
    private const int Batch = 256;
    private GrantFixture _fixture = null!;
    private GnttabMapGrantRef[] _map = null!;
    private GnttabUnmapGrantRef[] _unmap = null!;
    private GrantMap _gntDevMap = null!;
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
        _gntDevMap = _fixture.PrepareGntDevMap(0, Batch);
        if (GrantFixture.GntDevUnmapMap(_gntDevMap) != 0) throw new InvalidOperationException("gntdev map failed");
        _src = new byte[4096];
        _dst = new byte[4096];
    }

    [GlobalCleanup]
    public void Cleanup() => _fixture.Dispose();

    /// <summary>Unmap + map per page of a 256-page gntdev map, through gntdev (P1).</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public int GntDevUnmapMap256() => GrantFixture.GntDevUnmapMap(_gntDevMap);

    /// <summary>Map + unmap per page, bare XenHost batches of 256.</summary>
    [Benchmark(OperationsPerInvoke = Batch)]
    public void MapUnmapBatch256() => _fixture.MapUnmap(_map, _unmap);

    /// <summary>Copy one (cache-hot) 4 KiB page.</summary>
    [Benchmark(Baseline = true)]
    public void CopyPage4KiB() => _src.AsSpan().CopyTo(_dst);
}
