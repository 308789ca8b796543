using System.Globalization;
using XenShare.Abi;

namespace XenShare.Cli.Demo;

/// <summary>Where the demo's display backend and its display run.</summary>
internal enum DemoBackendDomain
{
    /// <summary>A display driver domain: not direct-mapped, the display passed through behind the SMMU, so it
    /// sees guest-physical addresses (DM05). The setup zero-copy display backends use on Arm.</summary>
    Driver,

    /// <summary>dom0: direct-mapped, its display sees machine addresses through the Xen swiotlb (DM03, DM04).</summary>
    Dom0,
}

/// <summary>What <c>xenshare demo</c> runs: frame size, frame count, number of framebuffers, where the PNG
/// files go, who allocates the framebuffers (the frontend, or the backend with be-alloc), whether the display
/// path is zero-copy (dma-buf scan-out) or copying (GRANT_COPY), where the backend runs, and whether machine
/// memory is placed deliberately fragmented.</summary>
internal sealed record DemoOptions
{
    /// <summary>Smallest width and height.</summary>
    public const int MinDimension = 64;

    /// <summary>Largest width (4K UHD).</summary>
    public const int MaxWidth = 3840;

    /// <summary>Largest height (4K UHD).</summary>
    public const int MaxHeight = 2160;

    /// <summary>Most framebuffers.</summary>
    public const int MaxBuffers = 8;

    /// <summary>Most frames.</summary>
    public const int MaxFrames = 100_000;

    /// <summary>The contact sheet's file name.</summary>
    public const string ContactSheetFileName = "contact_sheet.png";

    /// <summary>Frame width in pixels (even, 64 to 3840).</summary>
    public int Width { get; init; } = 1280;

    /// <summary>Frame height in pixels (even, 64 to 2160).</summary>
    public int Height { get; init; } = 720;

    /// <summary>Frames to show (page flips).</summary>
    public int Frames { get; init; } = 60;

    /// <summary>Framebuffers the frontend cycles through (1 to 8).</summary>
    public int Buffers { get; init; } = 2;

    /// <summary>Output folder for frame_NNNN.png and contact_sheet.png.</summary>
    public string OutputDirectory { get; init; } = Path.Combine("out", "demo");

    /// <summary>Run the copying path (GRANT_COPY into a dom0 buffer) instead of zero-copy scan-out.</summary>
    public bool Copy { get; init; }

    /// <summary>Backend-allocated framebuffers (the toolstack writes <c>be-alloc</c> = 1): dom0 allocates
    /// contiguous DMA memory and grants it to domU, which maps it and draws into it.</summary>
    public bool BackendAllocated { get; init; }

    /// <summary>Where the backend and its display run (default: a display driver domain).</summary>
    public DemoBackendDomain BackendDomain { get; init; } = DemoBackendDomain.Driver;

    /// <summary>Deliberately fragmented machine placement (DM01): no two consecutive guest frames of a domU are
    /// machine-consecutive. Default: 2 MiB extents, as Xen allocates.</summary>
    public bool Fragmented { get; init; }

    /// <summary>Write the PNG of every N-th frame (the last frame is always written).</summary>
    public int PngEvery { get; init; } = 1;

    /// <summary>After the run, run the same frames again on the other display path (zero copy and copying) without
    /// writing files, to time both paths in one run and compare the PNG files byte for byte.</summary>
    public bool Compare { get; init; } = true;

    /// <summary>Write into an output folder that holds files the demo did not write (they are kept; those named like
    /// the demo's files are overwritten).</summary>
    public bool Force { get; init; }

    /// <summary>Tiles of the contact sheet (at most; fewer when there are fewer frames).</summary>
    public int ContactSheetFrames { get; init; } = 12;

    /// <summary>Bytes between rows of a framebuffer.</summary>
    public int Stride => Width * 4;

    /// <summary>Bytes of one frame.</summary>
    public long FrameBytes => (long)Stride * Height;

    /// <summary>Pages of one framebuffer.</summary>
    public int PagesPerBuffer => (int)XenPage.PagesFor(FrameBytes);

    /// <summary>The problems with these options, one sentence each; empty when they are valid. Does not touch the
    /// disk (see <see cref="CheckOutputDirectory"/>).</summary>
    public IReadOnlyList<string> Validate()
    {
        var problems = new List<string>();
        var c = CultureInfo.InvariantCulture;
        if (Width < MinDimension || Width > MaxWidth || Width % 2 != 0)
            problems.Add(string.Create(c, $"--width must be an even number from {MinDimension} to {MaxWidth}, got {Width}"));
        if (Height < MinDimension || Height > MaxHeight || Height % 2 != 0)
            problems.Add(string.Create(c, $"--height must be an even number from {MinDimension} to {MaxHeight}, got {Height}"));
        if (Frames < 1 || Frames > MaxFrames)
            problems.Add(string.Create(c, $"--frames must be from 1 to {MaxFrames}, got {Frames}"));
        if (Buffers < 1 || Buffers > MaxBuffers)
            problems.Add(string.Create(c, $"--buffers must be from 1 to {MaxBuffers}, got {Buffers}"));
        if (PngEvery < 1)
            problems.Add(string.Create(c, $"--png-every must be at least 1, got {PngEvery}"));
        if (Copy && BackendAllocated)
            problems.Add("--copy and --be-alloc exclude each other: GRANT_COPY reads the frontend's grants, and with --be-alloc the framebuffers are dom0's own memory");
        if (string.IsNullOrWhiteSpace(OutputDirectory))
            problems.Add("--out must name a folder");
        return problems;
    }

    /// <summary>Checks that the output folder can be used at all: not a file, readable, and writable (it is created
    /// when missing, and a probe file written and deleted). Returns the problem, or null. Whether it holds files the
    /// demo did not write is <see cref="DemoOutputFolder.Inspect"/>'s question.</summary>
    public string? CheckOutputDirectory()
    {
        if (DemoOutputFolder.Inspect(OutputDirectory).Problem is { } problem) return problem;
        try
        {
            Directory.CreateDirectory(OutputDirectory);
            string probe = Path.Combine(OutputDirectory, ".xenshare-write-test-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
            File.WriteAllBytes(probe, [1]);
            File.Delete(probe);
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return $"--out '{OutputDirectory}' is not a writable folder: {e.Message}";
        }
    }

    /// <summary>The options of the comparison pass: the other display path over the same frames (GRANT_COPY after
    /// zero-copy scan-out, scan-out after GRANT_COPY). GRANT_COPY reads the frontend's grants, so the comparison runs
    /// frontend-allocated buffers even after a --be-alloc run.</summary>
    public DemoOptions ComparisonOptions => this with { Copy = !Copy, BackendAllocated = false, Compare = false };

    /// <summary>Whether frame <paramref name="frame"/> gets a PNG file.</summary>
    public bool WritesPng(int frame) => frame % PngEvery == 0 || frame == Frames - 1;

    /// <summary>The PNG file name of a frame (<c>frame_0007.png</c>).</summary>
    public static string FrameFileName(int frame) => "frame_" + frame.ToString("D4", CultureInfo.InvariantCulture) + ".png";

    /// <summary>The PNG path of a frame.</summary>
    public string FramePath(int frame) => Path.Combine(OutputDirectory, FrameFileName(frame));

    /// <summary>The contact sheet's path.</summary>
    public string ContactSheetPath => Path.Combine(OutputDirectory, ContactSheetFileName);
}
