using System.Diagnostics;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Emulation.Devices;
using XenShare.Emulation.Kernel;

namespace XenShare.Cli.Demo;

/// <summary>
/// The dom0 side of the demo (a PV display backend). Zero-copy mode: maps the ring, exports each framebuffer
/// once as a write-combining dma-buf, imports each into a <see cref="ScanoutEngine"/> (one contiguous segment) and
/// answers every page flip by latching the buffer and scanning it out, through its DMA address, into a PNG file.
/// Copy mode: the same ring, but each flip GRANT_COPYs the frame from the frontend's grants into a dom0 buffer
/// that is then written out.
/// </summary>
internal sealed class DemoBackend
{
    private static readonly TimeSpan ReleaseTimeout = TimeSpan.FromSeconds(30);
    private readonly DemoOptions _options;
    private readonly GuestProcess _process;
    private readonly DomainId _frontend;
    private readonly DemoXenbus _xenbus;
    private readonly ContactSheet? _sheet;
    private readonly HashSet<int> _sheetFrames;
    private readonly List<string> _pngFiles = new();
    private readonly List<double> _flipMicroseconds = new();
    private long _displayTicks;

    public DemoBackend(DemoOptions options, GuestProcess process, DomainId frontend, DemoXenbus xenbus)
    {
        _options = options;
        _process = process;
        _frontend = frontend;
        _xenbus = xenbus;
        int tiles = Math.Min(options.Frames, options.ContactSheetFrames);
        _sheetFrames = new HashSet<int>();
        if (tiles > 0)
        {
            for (int i = 0; i < tiles; i++) _sheetFrames.Add(tiles == 1 ? 0 : (int)((long)i * (options.Frames - 1) / (tiles - 1)));
            _sheet = new ContactSheet(options.Width, options.Height, _sheetFrames.Count, columns: 4, thumbnailWidth: Math.Min(320, options.Width));
        }
    }

    /// <summary>The contact sheet being filled (null when no frames are sampled).</summary>
    public ContactSheet? Sheet => _sheet;

    /// <summary>PNG files written.</summary>
    public IReadOnlyList<string> PngFiles => _pngFiles;

    /// <summary>Display-path time of all flips (see <see cref="DemoResult.DisplayPathTime"/>).</summary>
    public TimeSpan DisplayPathTime => Stopwatch.GetElapsedTime(0, _displayTicks);

    /// <summary>Median display-path time of one flip, in microseconds (0 before the first flip).</summary>
    public double MedianFlipMicroseconds
    {
        get
        {
            if (_flipMicroseconds.Count == 0) return 0;
            var sorted = _flipMicroseconds.ToArray();
            Array.Sort(sorted);
            int mid = sorted.Length / 2;
            return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
        }
    }

    /// <summary>CPU bytes copied on the display path.</summary>
    public long CpuBytesCopied { get; private set; }

    /// <summary>Grant operations at set-up.</summary>
    public long SetupGrantOps { get; private set; }

    /// <summary>Grant operations (copy segments) over all flips.</summary>
    public long FrameGrantOps { get; private set; }

    /// <summary>Segments of each framebuffer as mapped for the scan-out engine.</summary>
    public List<int> ScanoutSegments { get; } = new();

    /// <summary>Frames scanned out in place.</summary>
    public long ZeroCopyFrames { get; private set; }

    /// <summary>Whether every export was released in time.</summary>
    public bool Released { get; private set; } = true;

    /// <summary>Flips answered.</summary>
    public int Flips { get; private set; }

    /// <summary>Serves the frontend until it disconnects or <paramref name="stop"/> fires, then releases
    /// everything and reports Closed.</summary>
    public void Run(CancellationToken stop)
    {
        try
        {
            RunCore(stop);
        }
        finally
        {
            _xenbus.BackendClosed.Set();
        }
    }

    private void RunCore(CancellationToken stop)
    {
        var o = _options;
        GrantMapping? ringMap = null;
        ScanoutEngine? engine = null;
        var exports = new List<ExportedDmaBuf>();
        ProcessBuffer? staging = null;
        using var events = EventChannels.Open(_process);
        using var gnt = GrantDevice.Open(_process);
        try
        {
            var info = _xenbus.WaitFrontend(stop);
            if (info.BufferRefs.Length != o.Buffers) throw new InvalidDataException("frontend published the wrong number of buffers");
            ringMap = gnt.Map(_frontend, [info.RingRef], writable: true);
            SetupGrantOps = 1;
            var ring = DisplayRing.AttachBackend(ringMap.Address);
            var port = events.BindInterdomain(_frontend, info.Port);

            ScanoutFramebuffer[] framebuffers = [];
            GrantCopySegment[][] copies = [];
            if (!o.Copy)
            {
                engine = new ScanoutEngine(_process.Kernel, "demo-scanout");
                framebuffers = new ScanoutFramebuffer[o.Buffers];
                for (int b = 0; b < o.Buffers; b++)
                {
                    var export = gnt.ExportDmaBuf(_frontend, info.BufferRefs[b], DmaBufBacking.WriteCombine);
                    exports.Add(export);
                    SetupGrantOps += info.BufferRefs[b].Length;
                    framebuffers[b] = engine.Attach(_process, export.Fd, o.Width, o.Height, o.Stride);
                    ScanoutSegments.Add(framebuffers[b].SegmentCount);
                }
            }
            else
            {
                staging = ProcessBuffer.Allocate(_process, checked((int)o.FrameBytes));
                copies = new GrantCopySegment[o.Buffers][];
                for (int b = 0; b < o.Buffers; b++) copies[b] = CopySegments(_frontend, info.BufferRefs[b], staging.Address, o.FrameBytes);
            }
            _xenbus.BackendConnected.Set();

            var statuses = new short[o.PagesPerBuffer];
            bool disconnected = false;
            while (!disconnected)
            {
                while (ring.TryTakeRequest(out var request))
                {
                    long t0 = Stopwatch.GetTimestamp();
                    if (request.Operation == (ushort)DisplayOperation.Disconnect)
                    {
                        ring.PushResponse(new DisplayResponse { Id = request.Id });
                        ring.PublishResponses();
                        events.Notify(port);
                        disconnected = true;
                        break;
                    }

                    int status = request.Operation != (ushort)DisplayOperation.PageFlip || request.Buffer >= o.Buffers || request.Frame >= (uint)o.Frames
                        ? -Errno.EINVAL
                        : 0;
                    int frame = (int)request.Frame;
                    if (status == 0)
                    {
                        if (engine is not null)
                        {
                            engine.Flip(framebuffers[request.Buffer]);
                        }
                        else
                        {
                            var segs = copies[request.Buffer];
                            gnt.Copy(segs, statuses);
                            for (int i = 0; i < segs.Length; i++)
                                if (statuses[i] != GntSt.okay) throw new XenShareException(Errno.EIO, $"GRANT_COPY of frame {frame}, page {i}: GNTST {statuses[i]}");
                            CpuBytesCopied += o.FrameBytes;
                            FrameGrantOps += segs.Length;
                        }
                    }
                    long t1 = Stopwatch.GetTimestamp();
                    if (status == 0) ScanOut(engine, framebuffers.Length > 0 ? framebuffers[request.Buffer] : null, staging, frame);
                    long t2 = Stopwatch.GetTimestamp();
                    ring.PushResponse(new DisplayResponse { Id = request.Id, Status = status, Frame = request.Frame });
                    ring.PublishResponses();
                    events.Notify(port);
                    long ticks = (t1 - t0) + (Stopwatch.GetTimestamp() - t2);
                    _displayTicks += ticks;
                    if (status == 0) _flipMicroseconds.Add(Stopwatch.GetElapsedTime(0, ticks).TotalMicroseconds);
                    if (status == 0) Flips++;
                }
                if (!disconnected) DemoFrontend.WaitEvent(events, port, stop);
            }
        }
        finally
        {
            if (engine is not null)
            {
                CpuBytesCopied += engine.CpuBytesCopied;
                ZeroCopyFrames = engine.ZeroCopyFrames;
                engine.Dispose();                    // detach and drop the dma-buf references
            }
            foreach (var export in exports) export.Dispose();   // close the fds
            foreach (var export in exports)
                if (!export.WaitForRelease(ReleaseTimeout)) Released = false;
            staging?.Dispose();
            ringMap?.Dispose();
        }
    }

    private static GrantCopySegment[] CopySegments(DomainId domain, GrantRef[] refs, long destination, long frameBytes)
    {
        var segs = new GrantCopySegment[refs.Length];
        for (int i = 0; i < refs.Length; i++)
        {
            long offset = (long)i * 4096;
            ushort length = (ushort)Math.Min(4096, frameBytes - offset);
            segs[i] = new GrantCopySegment(GrantCopyOperand.Foreign(domain, refs[i]), GrantCopyOperand.Local(destination + offset), length);
        }
        return segs;
    }

    private void ScanOut(ScanoutEngine? engine, ScanoutFramebuffer? framebuffer, ProcessBuffer? staging, int frame)
    {
        var o = _options;
        bool png = o.WritesPng(frame);
        if (engine is not null)
        {
            // The display reads every flipped frame; only some go to files.
            if (png)
            {
                string path = o.FramePath(frame);
                using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
                using (var writer = new PngRowWriter(file, o.Width, o.Height))
                {
                    engine.ScanOut((_, row) => writer.WriteRow(row));
                    writer.Complete();
                }
                _pngFiles.Add(path);
            }
            else
            {
                engine.ScanOut(static (_, _) => { });
            }
            if (_sheet is not null && _sheetFrames.Contains(frame))
                _sheet.AddFrame((y, destination) => engine.ReadRow(framebuffer!, y, destination), frame);
        }
        else
        {
            ReadOnlySpan<byte> pixels = staging!.Span[..checked((int)o.FrameBytes)];
            if (png)
            {
                string path = o.FramePath(frame);
                PngEncoder.Write(path, pixels, o.Width, o.Height, o.Stride);
                _pngFiles.Add(path);
            }
            if (_sheet is not null && _sheetFrames.Contains(frame)) _sheet.AddFrame(pixels, o.Stride, frame);
        }
    }
}
