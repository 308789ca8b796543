using System.Buffers;
using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Emulation.Devices;

/// <summary>
/// An emulated display controller of a guest kernel: a DMA device without an IOMMU
/// (<see cref="DmaTranslation.Direct"/>) that imports dma-bufs as framebuffers and scans the front buffer
/// out by reading through the sg table's DMA address. Like most simple display engines it can only fetch
/// from one contiguous range, so it accepts only buffers that map to a single segment (a buffer exported
/// with GNTDEV_DMA_FLAG_WC or _COHERENT) and refuses scattered ones with EINVAL.
/// </summary>
/// <remarks>
/// <para>How the buffer reaches the engine is the DMA API's business (<see cref="DmaDevice"/>, DM03-DM05):
/// in a direct-mapped dom0 a segment whose machine frames are not contiguous is bounced through the swiotlb
/// (at most 256 KiB; a larger one fails to attach with ENOMEM), in a driver domain behind the SMMU the engine
/// reads guest-physical addresses in place. A frame is zero copy when no byte of it comes from a bounce
/// buffer (<see cref="ZeroCopyFrames"/>); <see cref="CpuBytesCopied"/> counts the swiotlb's copies for the
/// engine. The emulator hands rows to the sink as views of machine memory when the frames behind the segment
/// are machine-contiguous, and otherwise gathers each row through the device's translation into a line
/// buffer: that is the device's DMA through its SMMU, not a CPU copy on hardware, and is counted apart in
/// <see cref="GatheredBytes"/>. A bounced buffer shows what the CPU wrote before the attach (or the last
/// <see cref="ScanoutFramebuffer.SyncForDevice"/>), as on hardware.</para>
/// <para>Lock: <c>_lock</c> guards the framebuffer list, the front buffer and the counters, and is held
/// while a frame is scanned out (so a framebuffer cannot be released under the reader). It is taken after
/// any driver or dma-buf lock is released: dma-buf calls made under it only take the dma-buf's own leaf
/// lock.</para>
/// </remarks>
public sealed class ScanoutEngine : IDisposable
{
    private readonly object _lock = new();
    private readonly List<ScanoutFramebuffer> _framebuffers = new();
    private ScanoutFramebuffer? _front;
    private int _nextId;
    private long _flips;
    private long _framesScannedOut;
    private long _zeroCopyFrames;
    private long _bytesScannedOut;
    private long _gatheredBytes;
    private bool _disposed;

    /// <summary>Creates the engine as a device of <paramref name="kernel"/>.</summary>
    /// <param name="kernel">The kernel the display controller belongs to (usually dom0's).</param>
    /// <param name="name">Device name.</param>
    /// <param name="dmaMask">The highest bus address the engine can reach.</param>
    public ScanoutEngine(GuestKernel kernel, string name = "scanout0", ulong dmaMask = ulong.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Device = new DmaDevice(kernel, name, DmaTranslation.Direct, dmaMask);
    }

    /// <summary>The engine's DMA device.</summary>
    public DmaDevice Device { get; }

    /// <summary>Framebuffers currently attached.</summary>
    public int FramebufferCount { get { lock (_lock) return _framebuffers.Count; } }

    /// <summary>The buffer scanned out by <see cref="ScanOut"/>, or null before the first flip.</summary>
    public ScanoutFramebuffer? Front { get { lock (_lock) return _front; } }

    /// <summary>Page flips latched so far.</summary>
    public long Flips { get { lock (_lock) return _flips; } }

    /// <summary>Frames scanned out so far.</summary>
    public long FramesScannedOut { get { lock (_lock) return _framesScannedOut; } }

    /// <summary>Frames scanned out from the buffer's own memory, with no byte from a bounce buffer.</summary>
    public long ZeroCopyFrames { get { lock (_lock) return _zeroCopyFrames; } }

    /// <summary>Bytes delivered to sinks so far.</summary>
    public long BytesScannedOut { get { lock (_lock) return _bytesScannedOut; } }

    /// <summary>Bytes the CPU copied for the engine: the swiotlb's bounce copies of its mappings (at attach,
    /// sync and detach); 0 when every buffer was reached in place.</summary>
    public long CpuBytesCopied => Device.BounceBytes;

    /// <summary>Bytes the emulator gathered row by row through the device's translation (machine frames not
    /// contiguous behind a segment the device reaches through an SMMU): device DMA, not a CPU copy.</summary>
    public long GatheredBytes { get { lock (_lock) return _gatheredBytes; } }

    /// <summary>
    /// Imports the dma-buf at <paramref name="dmaBufFd"/> of <paramref name="process"/> as a framebuffer:
    /// takes a reference (dma_buf_get), attaches the engine, maps the attachment DMA_TO_DEVICE and checks
    /// that the table is one segment large enough for the frame.
    /// </summary>
    /// <returns>0, or -EBADF (not open), -EINVAL (not a dma-buf, not one contiguous segment, too small, bad
    /// geometry), -ENOMEM or the exporter's error; <paramref name="reason"/> says why in words.</returns>
    public int TryAttach(GuestProcess process, int dmaBufFd, int width, int height, int stride, out ScanoutFramebuffer? framebuffer, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(process);
        framebuffer = null;
        reason = null;
        if (width <= 0 || height <= 0 || stride < width * 4L)
        {
            reason = $"bad framebuffer geometry {width}x{height}, stride {stride}";
            return -Errno.EINVAL;
        }
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
        }

        var mapping = DmaBufMapping.Import(process, dmaBufFd, Device, DmaDirection.ToDevice, out int errno, out var failedAt);
        if (mapping is null)
        {
            reason = failedAt switch
            {
                DmaBufImportStep.Get => errno == -Errno.EBADF ? $"fd {dmaBufFd} is not open" : $"fd {dmaBufFd} is not a dma-buf",
                DmaBufImportStep.Attach => "the exporter refused the attachment",
                _ => errno == -Errno.ENOMEM && Device.UsesXenSwiotlb
                    ? "the exporter could not map the buffer for the engine (ENOMEM: in this direct-mapped domain a segment whose machine frames are not contiguous must be bounced through the swiotlb, which takes at most 256 KiB)"
                    : "the exporter could not map the buffer for the engine",
            };
            return errno;
        }
        var (buffer, attachment, table) = (mapping.Buffer, mapping.Attachment, mapping.Table);

        long frameBytes = ((long)stride * (height - 1)) + (width * 4L);
        if (table.Segments.Count != 1 || table.Segments[0].Length < frameBytes)
        {
            reason = table.Segments.Count != 1
                ? $"the dma-buf maps to {table.Segments.Count} DMA segments; the scan-out engine needs one contiguous segment (export it with GNTDEV_DMA_FLAG_WC or GNTDEV_DMA_FLAG_COHERENT)"
                : $"the dma-buf holds {table.Segments[0].Length} bytes; a {width}x{height} frame with stride {stride} needs {frameBytes}";
            mapping.Dispose();
            return -Errno.EINVAL;
        }

        lock (_lock)
        {
            var fb = new ScanoutFramebuffer(this, _nextId++, buffer, attachment, table, width, height, stride);
            if (_disposed)
            {
                fb.TearDown();
                throw new ObjectDisposedException(nameof(ScanoutEngine));
            }
            _framebuffers.Add(fb);
            framebuffer = fb;
        }
        return 0;
    }

    /// <summary>Like <see cref="TryAttach"/>, throwing <see cref="DeviceException"/> (with the errno and the
    /// reason in the message) on failure.</summary>
    public ScanoutFramebuffer Attach(GuestProcess process, int dmaBufFd, int width, int height, int stride)
    {
        int rc = TryAttach(process, dmaBufFd, width, height, stride, out var framebuffer, out string? reason);
        if (rc < 0) throw new DeviceException(-rc, "scan-out attach: " + reason);
        return framebuffer!;
    }

    /// <summary>Page flip: latches <paramref name="framebuffer"/> as the front buffer. Bookkeeping only; no
    /// memory is touched until <see cref="ScanOut"/>.</summary>
    public void Flip(ScanoutFramebuffer framebuffer)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        if (framebuffer.Engine != this) throw new ArgumentException("the framebuffer belongs to another engine", nameof(framebuffer));
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(framebuffer.IsDisposed, framebuffer);
            _front = framebuffer;
            _flips++;
        }
    }

    /// <summary>
    /// Scans the front buffer out: every row, top to bottom, goes to <paramref name="sink"/>, read through
    /// the segment's DMA address. Returns true when the frame came from the buffer's own memory (zero copy),
    /// false when it came from a swiotlb bounce buffer. The engine's lock is held during the call.
    /// </summary>
    public bool ScanOut(ScanoutRowSink sink)
    {
        ArgumentNullException.ThrowIfNull(sink);
        lock (_lock)
        {
            var fb = _front ?? throw new InvalidOperationException("nothing to scan out: no page flip yet");
            if (fb.IsDisposed) throw new ObjectDisposedException(nameof(ScanoutFramebuffer), "the front buffer was released");
            int rc = ScanOutLocked(fb, sink, default, null);
            if (rc < 0) throw new DeviceException(-rc, "scan-out DMA read");
            return fb.BouncedBytes == 0;
        }
    }

    /// <summary>A row handed to <see cref="TryScanOut"/>'s copier: the row's pixels and the caller's destination.</summary>
    public delegate void RowCopier(int y, ReadOnlySpan<byte> row, Span<byte> destination);

    /// <summary>Scans <paramref name="expected"/> out into <paramref name="destination"/> through
    /// <paramref name="copy"/>, if it is still the front buffer: 0, -ENODATA when it is not (released or
    /// flipped away meanwhile), or -EFAULT when the DMA read failed.</summary>
    public int TryScanOut(ScanoutFramebuffer expected, Span<byte> destination, RowCopier copy)
    {
        ArgumentNullException.ThrowIfNull(expected);
        ArgumentNullException.ThrowIfNull(copy);
        lock (_lock)
        {
            if (_front != expected || expected.IsDisposed) return -Errno.ENODATA;
            return ScanOutLocked(expected, null, destination, copy);
        }
    }

    /// <summary>Under _lock: every row of <paramref name="fb"/>, top to bottom, to the sink or the copier.</summary>
    private int ScanOutLocked(ScanoutFramebuffer fb, ScanoutRowSink? sink, Span<byte> destination, RowCopier? copy)
    {
        int rowBytes = fb.Width * 4;
        ReadOnlySpan<byte> frame = Device.TryDirectSpan(fb.DmaAddress, checked((int)fb.FrameBytes));
        if (!frame.IsEmpty)
        {
            for (int y = 0; y < fb.Height; y++)
            {
                var row = frame.Slice(y * fb.Stride, rowBytes);
                if (sink is not null) sink(y, row);
                else copy!(y, row, destination);
            }
        }
        else
        {
            byte[] line = ArrayPool<byte>.Shared.Rent(rowBytes);
            try
            {
                for (int y = 0; y < fb.Height; y++)
                {
                    var row = line.AsSpan(0, rowBytes);
                    int rc = Device.DmaRead(fb.DmaAddress + (ulong)((long)y * fb.Stride), row);
                    if (rc < 0) return rc;
                    _gatheredBytes += rowBytes;
                    if (sink is not null) sink(y, row);
                    else copy!(y, row, destination);
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(line);
            }
        }
        if (fb.BouncedBytes == 0) _zeroCopyFrames++;
        _framesScannedOut++;
        _bytesScannedOut += (long)rowBytes * fb.Height;
        return 0;
    }

    /// <summary>Reads one row of <paramref name="framebuffer"/> into <paramref name="destination"/> through
    /// its DMA address (for thumbnails and checks; not part of scan-out and not counted in
    /// <see cref="CpuBytesCopied"/>).</summary>
    public void ReadRow(ScanoutFramebuffer framebuffer, int y, Span<byte> destination)
    {
        ArgumentNullException.ThrowIfNull(framebuffer);
        ArgumentOutOfRangeException.ThrowIfNegative(y);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(y, framebuffer.Height);
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(framebuffer.IsDisposed, framebuffer);
            int rc = Device.DmaRead(framebuffer.DmaAddress + (ulong)((long)y * framebuffer.Stride), destination[..Math.Min(destination.Length, framebuffer.Width * 4)]);
            if (rc < 0) throw new DeviceException(-rc, "scan-out DMA read");
        }
    }

    internal void Release(ScanoutFramebuffer framebuffer)
    {
        lock (_lock)
        {
            if (!framebuffer.TearDown()) return;
            _framebuffers.Remove(framebuffer);
            if (_front == framebuffer) _front = null;
        }
    }

    /// <summary>Releases every framebuffer (detach, drop the dma-buf references).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
            foreach (var fb in _framebuffers) fb.TearDown();
            _framebuffers.Clear();
            _front = null;
        }
    }
}
