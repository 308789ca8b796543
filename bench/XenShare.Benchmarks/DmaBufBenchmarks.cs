using BenchmarkDotNet.Attributes;
using XenShare.Api;
using XenShare.Cli.Bench;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Benchmarks;

/// <summary>P2 / P7 in detail: the life of an exported 1080p frame (2025 refs, WC): export, attach,
/// map, detach, close, wait released; and the cached map of an attachment. In a display driver domain, where a
/// WC export of a guest's scattered pages maps as one segment (DM05; a direct-mapped dom0 could not map it).</summary>
[MemoryDiagnoser]
public class DmaBufLifecycleBenchmarks
{
    private DmaBufFixture _fx = null!;
    private IGuestProcess _p0 = null!;
    private GrantDevice _gnt = null!;
    private GrantRef[] _refs = null!;
    private DmaDevice _device = null!;
    private ExportedDmaBuf _held = null!;
    private DmaBufObject _heldObj = null!;
    private DmaBufAttachment _att = null!;

    [GlobalSetup]
    public void Setup()
    {
        _fx = new DmaBufFixture(2025, dom0Unpopulated: 8192, maxFds: 1024, driverDomain: true);
        var p0 = _fx.StartBackendProcess();
        _p0 = p0;
        _gnt = GrantDevice.Open(p0);
        _refs = _fx.Refs();
        _device = new DmaDevice(_fx.Backend.Kernel, "bdn-scanout");
        _held = _gnt.ExportDmaBuf(_fx.Guests[0].Id, _refs, DmaBufBacking.WriteCombine);
        _heldObj = DmaBufObject.Get((XenShare.Emulation.Kernel.GuestProcess)p0, _held.Fd, out _)!;
        _att = _heldObj.Attach(_device, out _)!;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _heldObj.Detach(_att);
        _heldObj.Put();
        _held.Dispose();
        _gnt.Dispose();
        _fx.Dispose();
    }

    /// <summary>P2: one whole frame lifecycle.</summary>
    [Benchmark]
    public void Export1080pLifecycle()
    {
        var buf = _gnt.ExportDmaBuf(_fx.Guests[0].Id, _refs, DmaBufBacking.WriteCombine);
        var obj = DmaBufObject.Get((XenShare.Emulation.Kernel.GuestProcess)_p0, buf.Fd, out _)!;
        var att = obj.Attach(_device, out _)!;
        var t = obj.MapAttachment(att, DmaDirection.ToDevice, out _)!;
        obj.UnmapAttachment(att, t, DmaDirection.ToDevice);
        obj.Detach(att);
        obj.Put();
        buf.Close();
        buf.WaitForRelease(TimeSpan.FromSeconds(30));
    }

    /// <summary>P7: a cached map + unmap of an attachment allocates nothing.</summary>
    [Benchmark]
    public void CachedMapAttachment()
    {
        var t = _heldObj.MapAttachment(_att, DmaDirection.ToDevice, out _)!;
        _heldObj.UnmapAttachment(_att, t, DmaDirection.ToDevice);
    }
}

/// <summary>P6: export / close / wait with 10 vs 100 000 live exports in the same gntdev file.</summary>
[MemoryDiagnoser]
public class LiveExportsBenchmarks
{
    private DmaBufFixture _fx = null!;
    private GrantDevice _gnt = null!;
    private GrantRef[] _refs = null!;
    private readonly List<ExportedDmaBuf> _live = new();

    /// <summary>Exports kept alive while measuring.</summary>
    [Params(10, 100_000)]
    public int Live { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _fx = new DmaBufFixture(1);
        _gnt = GrantDevice.Open(_fx.StartDom0Process());
        _refs = _fx.Refs();
        for (int i = 0; i < Live; i++) _live.Add(_gnt.ExportDmaBuf(_fx.Guests[0].Id, _refs));
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var b in _live) b.Dispose();
        _live.Clear();
        _gnt.Dispose();
        _fx.Dispose();
    }

    /// <summary>One export, close and wait for release.</summary>
    [Benchmark]
    public bool ExportCloseWait()
    {
        var b = _gnt.ExportDmaBuf(_fx.Guests[0].Id, _refs);
        b.Close();
        return b.WaitForRelease(TimeSpan.FromSeconds(30));
    }
}

/// <summary>P9: export/close/wait loops on two gntdev files (two processes, two domUs), one or two threads.</summary>
public class TwoFilesBenchmarks
{
    private const int Cycles = 500;
    private DmaBufFixture _fx = null!;
    private (GrantDevice Gnt, GrantRef[] Refs, DomainId DomU)[] _lanes = null!;

    [GlobalSetup]
    public void Setup()
    {
        _fx = new DmaBufFixture(16, guests: 2);
        _lanes = new (GrantDevice, GrantRef[], DomainId)[2];
        for (int i = 0; i < 2; i++) _lanes[i] = (GrantDevice.Open(_fx.StartDom0Process()), _fx.Refs(i), _fx.Guests[i].Id);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var l in _lanes) l.Gnt.Dispose();
        _fx.Dispose();
    }

    private void Loop(int lane)
    {
        var (gnt, refs, domU) = _lanes[lane];
        for (int i = 0; i < Cycles; i++)
        {
            var b = gnt.ExportDmaBuf(domU, refs);
            b.Close();
            b.WaitForRelease(TimeSpan.FromSeconds(30));
        }
    }

    /// <summary>One thread, one file.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Cycles)]
    public void OneThread() => Loop(0);

    /// <summary>Two threads, two files (twice the work per invoke).</summary>
    [Benchmark(OperationsPerInvoke = 2 * Cycles)]
    public void TwoThreads() => Parallel.Invoke(() => Loop(0), () => Loop(1));
}
