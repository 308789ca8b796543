namespace XenShare.Cli.Json;

/// <summary>The shape of <c>xenshare demo --json</c> (snake_case on the wire, see <see cref="DemoJsonContext"/>).</summary>
internal sealed record DemoJson
{
    /// <summary>"scanout" (dma-buf scan-out) or "copy" (GRANT_COPY).</summary>
    public required string Mode { get; init; }

    /// <summary>"driver" or "dom0".</summary>
    public required string BackendDomain { get; init; }

    /// <summary>The backend's domain id.</summary>
    public required int BackendDomid { get; init; }

    /// <summary>Whether the backend's domain is direct-mapped.</summary>
    public required bool BackendDirectMapped { get; init; }

    /// <summary>Backend-allocated framebuffers.</summary>
    public required bool BeAlloc { get; init; }

    /// <summary>"extents" or "fragmented".</summary>
    public required string Placement { get; init; }

    /// <summary>Frame width.</summary>
    public required int Width { get; init; }

    /// <summary>Frame height.</summary>
    public required int Height { get; init; }

    /// <summary>Framebuffers.</summary>
    public required int Buffers { get; init; }

    /// <summary>Frames asked for.</summary>
    public required int FramesRequested { get; init; }

    /// <summary>Frames whose flip the frontend saw complete.</summary>
    public required int FramesShown { get; init; }

    /// <summary>Frames the display showed (one more than <see cref="FramesShown"/> when cancelled between the two).</summary>
    public required int FramesPresented { get; init; }

    /// <summary>Bytes the CPU copied on the display path.</summary>
    public required long CpuBytesCopied { get; init; }

    /// <summary>Bytes the swiotlb bounced.</summary>
    public required long BounceBytes { get; init; }

    /// <summary>Framebuffers the display could not map.</summary>
    public required int MappingErrors { get; init; }

    /// <summary>No byte copied on the way to the display.</summary>
    public required bool ZeroCopy { get; init; }

    /// <summary>Frames read in place by the scan-out.</summary>
    public required long ZeroCopyFrames { get; init; }

    /// <summary>DMA segments per framebuffer.</summary>
    public required IReadOnlyList<int> ScanoutSegments { get; init; }

    /// <summary>Grant operations per frame in steady state.</summary>
    public required long GrantOpsPerFrame { get; init; }

    /// <summary>Median display path per flip, PNG excluded.</summary>
    public required double MicrosecondsPerFlip { get; init; }

    /// <summary>Median display path per flip of the dma-buf scan-out timing pass, or null.</summary>
    public required double? ScanoutUsPerFlip { get; init; }

    /// <summary>Median display path per flip of the GRANT_COPY timing pass, or null.</summary>
    public required double? CopyUsPerFlip { get; init; }

    /// <summary><see cref="CopyUsPerFlip"/> / <see cref="ScanoutUsPerFlip"/>, or null.</summary>
    public required double? CopyToScanoutRatio { get; init; }

    /// <summary>PNG files written.</summary>
    public required int PngFiles { get; init; }

    /// <summary>PNG files whose frame the timing passes also encoded.</summary>
    public required int PngsCompared { get; init; }

    /// <summary>Of those, byte-identical in every pass.</summary>
    public required int PngsIdentical { get; init; }

    /// <summary>The contact sheet's path, or null.</summary>
    public required string? ContactSheet { get; init; }

    /// <summary>The timing pass of this run's display path (writing nothing), or null.</summary>
    public required DemoPassJson? Timed { get; init; }

    /// <summary>The timing pass of the other display path (writing nothing), or null.</summary>
    public required DemoPassJson? Comparison { get; init; }

    /// <summary>The run (or a timing pass) was cancelled.</summary>
    public required bool Cancelled { get; init; }

    /// <summary>Teardown clean.</summary>
    public required bool Clean { get; init; }

    /// <summary>Leak findings.</summary>
    public required int Leaks { get; init; }

    /// <summary>What a real system would do, or null.</summary>
    public required string? Advice { get; init; }
}

/// <summary>A timing pass of <see cref="DemoJson"/>: the same frames on one display path, nothing written.</summary>
internal sealed record DemoPassJson
{
    /// <summary>"scanout" or "copy".</summary>
    public required string Mode { get; init; }

    /// <summary>Backend-allocated framebuffers.</summary>
    public required bool BeAlloc { get; init; }

    /// <summary>Frames whose flip the frontend saw complete.</summary>
    public required int FramesShown { get; init; }

    /// <summary>Bytes the CPU copied on the display path.</summary>
    public required long CpuBytesCopied { get; init; }

    /// <summary>Bytes the swiotlb bounced.</summary>
    public required long BounceBytes { get; init; }

    /// <summary>Framebuffers the display could not map.</summary>
    public required int MappingErrors { get; init; }

    /// <summary>No byte copied on the way to the display.</summary>
    public required bool ZeroCopy { get; init; }

    /// <summary>Frames read in place by the scan-out.</summary>
    public required long ZeroCopyFrames { get; init; }

    /// <summary>Grant operations per frame in steady state.</summary>
    public required long GrantOpsPerFrame { get; init; }

    /// <summary>Median display path per flip, PNG excluded.</summary>
    public required double MicrosecondsPerFlip { get; init; }

    /// <summary>The pass was cancelled.</summary>
    public required bool Cancelled { get; init; }

    /// <summary>Its teardown was clean.</summary>
    public required bool Clean { get; init; }
}
