namespace XenShare.Cli.Demo;

/// <summary>What a run of <see cref="DemoScene"/> did and measured: the run itself (its options' display path, the
/// files it wrote) and, in <see cref="Comparison"/>, the same frames on the other display path (nothing written, the
/// PNGs only hashed).</summary>
internal sealed record DemoResult
{
    /// <summary>The options of the run.</summary>
    public required DemoOptions Options { get; init; }

    /// <summary>Page flips completed (requested, shown, answered: the frontend saw the completion).</summary>
    public required int FramesCompleted { get; init; }

    /// <summary>Frames the display showed (SET_CONFIG with a framebuffer, and PG_FLIP). When a run is cancelled this
    /// can be one more than <see cref="FramesCompleted"/>: the display showed the last frame (and wrote its PNG) but the
    /// frontend stopped before it saw the completion.</summary>
    public int FramesPresented { get; init; }

    /// <summary>True when the run was cancelled before every frame was shown.</summary>
    public required bool Cancelled { get; init; }

    /// <summary>Wall time from the first request to the last completion (drawing and PNG writing included).</summary>
    public required TimeSpan Elapsed { get; init; }

    /// <summary>Time of the display path of all frames, as the frontend sees it: from its request until it saw the
    /// completion (SET_CONFIG's answer, PG_FLIP's flip event), minus what the display spent scanning out into PNG
    /// files and thumbnails; the grant copy is included in copy mode.</summary>
    public required TimeSpan DisplayPathTime { get; init; }

    /// <summary>Bytes the CPU copied on the display path: the GRANT_COPY bytes in copy mode; in scan-out mode the
    /// swiotlb's bounce copies for the display (0 when every frame was read in place).</summary>
    public required long CpuBytesCopied { get; init; }

    /// <summary>Bytes the backend domain's swiotlb copied (bounce buffers, DM04); 0 when every buffer was mapped in
    /// place.</summary>
    public long BounceBytes { get; init; }

    /// <summary>Framebuffers the display could not map (ENOMEM, DM04); with any, no frame was shown.</summary>
    public int MappingErrors { get; init; }

    /// <summary>The backend's domain id (0 for dom0).</summary>
    public int BackendDomainId { get; init; }

    /// <summary>Whether the backend's domain is direct-mapped (its display sees machine addresses).</summary>
    public bool BackendDirectMapped { get; init; }

    /// <summary>True when frames were shown and not one byte was copied on the way to the display.</summary>
    public bool ZeroCopy => !Options.Copy && FramesCompleted > 0 && CpuBytesCopied == 0 && BounceBytes == 0 && MappingErrors == 0;

    /// <summary>What a real system would do about mapping errors or bounce copies; null when there is nothing to
    /// say.</summary>
    public string? Advice => MappingErrors > 0
        ? "dom0 is direct-mapped: its display sees machine addresses, these frontend-allocated buffers are scattered in machine memory and larger than the swiotlb can bounce (256 KiB), so the display's DMA map failed with ENOMEM, as on real Arm hardware. A real system runs the display backend in a driver domain whose display sits behind the SMMU (--backend-domain driver), or lets the backend allocate the buffers (--be-alloc)."
        : BounceBytes > 0
            ? "the display reached these buffers through swiotlb bounce buffers (dom0 is direct-mapped and their machine frames are not contiguous): every present cost a CPU copy. A real system runs the display backend in a driver domain behind the SMMU (--backend-domain driver), or lets the backend allocate the buffers (--be-alloc)."
            : null;

    /// <summary>Grant maps at set-up: the request ring and the event page, plus every framebuffer page mapped once
    /// (by dom0 for the export, or with be-alloc by domU).</summary>
    public required long SetupGrantOps { get; init; }

    /// <summary>Grant operations per frame in steady state (0 zero-copy; one GNTTABOP_copy segment per page in
    /// copy mode).</summary>
    public required long GrantOpsPerFrame { get; init; }

    /// <summary>DMA segments of each framebuffer as mapped for the scan-out engine (zero-copy mode); empty in copy
    /// mode.</summary>
    public required IReadOnlyList<int> ScanoutSegments { get; init; }

    /// <summary>Frames the scan-out engine read in place (zero-copy mode).</summary>
    public required long ZeroCopyFrames { get; init; }

    /// <summary>PNGs encoded: the files written, or in the comparison pass the frames encoded into a hash only.</summary>
    public int PngsEncoded { get; init; }

    /// <summary>PNG files written, in frame order.</summary>
    public required IReadOnlyList<string> PngFiles { get; init; }

    /// <summary>The contact sheet, or null (cancelled, or nothing to show).</summary>
    public required string? ContactSheet { get; init; }

    /// <summary>The stamp on the contact sheet, line by line as drawn (the mode and the counters); empty without a
    /// sheet.</summary>
    public IReadOnlyList<string> ContactSheetCaption { get; init; } = [];

    /// <summary>The timing pass of this run's display path: the same frames again on a fresh host, writing nothing
    /// (PNGs encoded into hashes only), timed as <see cref="Comparison"/> is; null when not run (<c>--no-compare</c>,
    /// or this run was cancelled).</summary>
    public DemoResult? TimedRun { get; init; }

    /// <summary>The timing pass of the other display path (GRANT_COPY after scan-out, scan-out after GRANT_COPY) over
    /// the same frames, on a fresh host, writing nothing; null when not run.</summary>
    public DemoResult? Comparison { get; init; }

    /// <summary>PNG files of this run whose frame the timing passes also encoded.</summary>
    public int PngsCompared { get; init; }

    /// <summary>Of <see cref="PngsCompared"/>, those byte-identical in every pass (same hash): the same pixels reach
    /// the display either way; only who copies them differs.</summary>
    public int PngsIdentical { get; init; }

    /// <summary>The runs the timing table shows: the two timing passes, or this run alone without them.</summary>
    public IReadOnlyList<DemoResult> TimingRuns =>
        TimedRun is null ? [this] : Comparison is null ? [TimedRun] : [TimedRun, Comparison];

    /// <summary>The timed run on the dma-buf scan-out path, or null.</summary>
    public DemoResult? ScanoutRun => TimingRuns.FirstOrDefault(r => !r.Options.Copy);

    /// <summary>The timed run on the GRANT_COPY path, or null.</summary>
    public DemoResult? CopyRun => TimingRuns.FirstOrDefault(r => r.Options.Copy);

    /// <summary>Median display-path time per flip of GRANT_COPY over that of dma-buf scan-out, both timed alike in this
    /// run over the same frames; null unless both showed frames.</summary>
    public double? CopyToScanoutRatio =>
        ScanoutRun is { FramesCompleted: > 0, MicrosecondsPerFlip: > 0 } scan && CopyRun is { FramesCompleted: > 0 } copy
            ? copy.MicrosecondsPerFlip / scan.MicrosecondsPerFlip
            : null;

    /// <summary>The timing pass that was cancelled, or null.</summary>
    public DemoResult? CancelledTimingRun => TimedRun is { Cancelled: true } ? TimedRun : Comparison is { Cancelled: true } ? Comparison : null;

    /// <summary>True when this run or a timing pass was cancelled.</summary>
    public bool AnyCancelled => Cancelled || CancelledTimingRun is not null;

    /// <summary>Whether every DBUF_DESTROY was answered with success, i.e. the backend released every buffer in
    /// time.</summary>
    public required bool Released { get; init; }

    /// <summary>The host's leak and isolation findings after the teardown; empty when clean.</summary>
    public required IReadOnlyList<string> Leaks { get; init; }

    /// <summary>The displif requests the backend answered with success, by operation ("DBUF_CREATE 2, ...").</summary>
    public string Requests { get; init; } = "";

    /// <summary>The xenbus states dom0's backend switched to, in order ("InitWait, Connected, InitWait, Closed").</summary>
    public string BackendStates { get; init; } = "";

    /// <summary>The frontend's device directory in xenstore (<c>/local/domain/1/device/vdispl/0</c>).</summary>
    public string DevicePath { get; init; } = "";

    /// <summary>Page flips per second over <see cref="Elapsed"/>.</summary>
    public double FlipsPerSecond => FramesCompleted == 0 || Elapsed <= TimeSpan.Zero ? 0 : FramesCompleted / Elapsed.TotalSeconds;

    /// <summary>Median microseconds of display path per flip (the mean is <see cref="DisplayPathTime"/> / frames; the
    /// median keeps a first-flip JIT or a GC pause out of the figure).</summary>
    public required double MicrosecondsPerFlip { get; init; }

    /// <summary>CPU bytes copied per frame on the display path.</summary>
    public double CpuBytesPerFrame => FramesCompleted == 0 ? 0 : (double)CpuBytesCopied / FramesCompleted;

    /// <summary>True when every buffer was released and the leak check is clean, in this run and the timing passes.</summary>
    public bool Clean => Released && Leaks.Count == 0 && (TimedRun?.Clean ?? true) && (Comparison?.Clean ?? true);
}
