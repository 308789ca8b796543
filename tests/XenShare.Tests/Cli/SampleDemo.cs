using XenShare.Cli.Demo;

namespace XenShare.Tests.Cli;

/// <summary>Demo results with the longest texts the demo produces (4K, eight buffers, a deep output folder, the
/// largest counters), for layout tests that need no run.</summary>
internal static class SampleDemo
{
    private static DemoResult Pass(DemoOptions o, bool mappingErrors = false)
    {
        int frames = mappingErrors ? 0 : o.Frames;
        string folder = o.OutputDirectory;
        return new DemoResult
        {
            Options = o,
            FramesCompleted = frames,
            FramesPresented = frames,
            Cancelled = false,
            Elapsed = TimeSpan.FromSeconds(1234.5),
            DisplayPathTime = TimeSpan.FromSeconds(321.5),
            MicrosecondsPerFlip = o.Copy ? 123456.7 : 9876.5,
            CpuBytesCopied = o.Copy ? frames * o.FrameBytes : 0,
            BounceBytes = 0,
            MappingErrors = mappingErrors ? o.Buffers : 0,
            BackendDomainId = o.BackendDomain == DemoBackendDomain.Dom0 ? 0 : 2,
            BackendDirectMapped = o.BackendDomain == DemoBackendDomain.Dom0,
            SetupGrantOps = 2 + ((long)o.Buffers * o.PagesPerBuffer),
            GrantOpsPerFrame = o.Copy ? o.PagesPerBuffer : 0,
            ScanoutSegments = o.Copy ? [] : Enumerable.Repeat(1, o.Buffers).ToList(),
            ZeroCopyFrames = o.Copy ? 0 : frames,
            PngsEncoded = frames,
            PngFiles = o.Copy || frames == 0 ? [] : [Path.Combine(folder, DemoOptions.FrameFileName(0)), Path.Combine(folder, DemoOptions.FrameFileName(frames - 1))],
            ContactSheet = frames == 0 ? null : Path.Combine(folder, DemoOptions.ContactSheetFileName),
            Released = true,
            Leaks = [],
            Requests = $"DBUF_CREATE {o.Buffers}, FB_ATTACH {o.Buffers}, SET_CONFIG 2, PG_FLIP {Math.Max(0, frames - 1)}, FB_DETACH {o.Buffers}, DBUF_DESTROY {o.Buffers}",
            BackendStates = "Initialising, InitWait, Connected, InitWait, Connected, InitWait, Closed",
            DevicePath = "/local/domain/1/device/vdispl/0",
        };
    }

    private static DemoOptions Options(DemoBackendDomain backend = DemoBackendDomain.Driver) => new()
    {
        Width = DemoOptions.MaxWidth,
        Height = DemoOptions.MaxHeight,
        Frames = DemoOptions.MaxFrames,
        Buffers = DemoOptions.MaxBuffers,
        BackendDomain = backend,
        Fragmented = true,
        OutputDirectory = "/home/someone/projects/xenshare/out/a-rather-long-folder-name-for-the-demo-output/run-2026-12-01",
    };

    /// <summary>A zero-copy run at 4K with its two timing passes.</summary>
    public static DemoResult ZeroCopyWithComparison()
    {
        var o = Options();
        return Pass(o) with { TimedRun = Pass(o with { Compare = false }), Comparison = Pass(o.ComparisonOptions), PngsCompared = o.Frames, PngsIdentical = o.Frames };
    }

    /// <summary>dom0's display refusing every buffer (the advice note), compared with GRANT_COPY.</summary>
    public static DemoResult Dom0MappingErrors()
    {
        var o = Options(DemoBackendDomain.Dom0);
        return Pass(o, mappingErrors: true) with { TimedRun = Pass(o with { Compare = false }, mappingErrors: true), Comparison = Pass(o.ComparisonOptions) };
    }
}
