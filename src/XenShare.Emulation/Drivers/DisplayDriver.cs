using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Devices;
using XenShare.Emulation.Devices;
using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// The driver of an emulated display controller (<see cref="ScanoutEngine"/>), reached by any process of its
/// kernel through the seam at <c>/dev/xenshare/display&lt;N&gt;</c> with its own small ioctl ABI
/// (<see cref="DisplayDeviceIoctl"/>): FB_IMPORT imports a dma-buf fd of the caller as a framebuffer (dma_buf_get,
/// attach, map DMA_TO_DEVICE, as Linux on Xen maps it for this device, DM02-DM06), FLIP latches one, FB_SYNC
/// syncs a bounced one for the device, FB_RELEASE lets it go, STATS reads the counters, and read(2) scans the
/// front buffer out into the caller's buffer (rows of width x 4 bytes, packed: what tests and PNG files see).
/// Framebuffers belong to the open file that imported them and are released when it closes.
/// </summary>
/// <remarks>Lock: each file's <c>_lock</c> guards its framebuffer table (a leaf apart from the engine calls made
/// under it, which take the engine's lock and then the dma-buf's leaf lock: file &lt; engine &lt; dma-buf, as in
/// docs/design.md). The driver's counters are Interlocked.</remarks>
internal sealed class DisplayDriver : ImporterDeviceDriver
{
    private long _mappingErrors;

    /// <summary>Creates the display in <paramref name="kernel"/> and registers its device file.</summary>
    public DisplayDriver(GuestKernel kernel, string name)
        : base(kernel, name)
    {
        Engine = new ScanoutEngine(kernel, name);
    }

    /// <summary>The display controller.</summary>
    public ScanoutEngine Engine { get; }

    protected override int HeldCount => Engine.FramebufferCount;

    protected override string HeldWhat => "framebuffer(s)";

    protected override KernelFile OpenFile() => new DisplayFile(this);

    private sealed class DisplayFile(DisplayDriver driver) : KernelFile
    {
        private readonly object _lock = new();
        private readonly Dictionary<uint, ScanoutFramebuffer> _framebuffers = new();
        private uint _nextId = 1;
        private bool _released;

        public override int Ioctl(GuestProcess caller, uint request, Span<byte> arg)
        {
            if (request == DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_IMPORT) return Import(caller, arg);
            if (request == DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FLIP) return Flip(arg);
            if (request == DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_RELEASE) return Release(arg);
            if (request == DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_FB_SYNC) return Sync(arg);
            if (request == DisplayDeviceIoctl.XENSHARE_DISPLAY_IOCTL_STATS) return Stats(arg);
            return -Errno.ENOTTY;
        }

        private int Import(GuestProcess caller, Span<byte> arg)
        {
            if (arg.Length < Unsafe.SizeOf<xenshare_display_fb_import>()) return -Errno.EFAULT;
            ref var op = ref MemoryMarshal.AsRef<xenshare_display_fb_import>(arg);
            if (op.reserved != 0 || op.width == 0 || op.height == 0 || op.width > 16384 || op.height > 16384 || op.stride > int.MaxValue) return -Errno.EINVAL;
            if (op.fourcc != DisplayFourCC.XRGB8888 && op.fourcc != DisplayFourCC.ARGB8888) return -Errno.EINVAL;
            if (op.fd > int.MaxValue) return -Errno.EBADF;
            int rc = driver.Engine.TryAttach(caller, (int)op.fd, (int)op.width, (int)op.height, (int)op.stride, out var fb, out _);
            if (rc < 0)
            {
                if (rc == -Errno.ENOMEM) Interlocked.Increment(ref driver._mappingErrors);
                return rc;
            }
            uint id;
            lock (_lock)
            {
                if (_released)
                {
                    fb!.Dispose();
                    return -Errno.EBADF;
                }
                id = _nextId++;
                _framebuffers[id] = fb!;
            }
            op.fb_id = id;
            op.segments = (uint)fb!.SegmentCount;
            op.bounced_bytes = (ulong)fb.BouncedBytes;
            return 0;
        }

        private int Flip(Span<byte> arg)
        {
            // A hot path (P7): no allocation.
            if (arg.Length < Unsafe.SizeOf<xenshare_display_fb>()) return -Errno.EFAULT;
            var op = MemoryMarshal.Read<xenshare_display_fb>(arg);
            if (op.reserved != 0) return -Errno.EINVAL;
            lock (_lock)
            {
                if (!_framebuffers.TryGetValue(op.fb_id, out var fb)) return -Errno.ENOENT;
                driver.Engine.Flip(fb);
                return 0;
            }
        }

        private int Release(Span<byte> arg)
        {
            if (arg.Length < Unsafe.SizeOf<xenshare_display_fb>()) return -Errno.EFAULT;
            var op = MemoryMarshal.Read<xenshare_display_fb>(arg);
            if (op.reserved != 0) return -Errno.EINVAL;
            ScanoutFramebuffer? fb;
            lock (_lock)
            {
                if (!_framebuffers.Remove(op.fb_id, out fb)) return -Errno.ENOENT;
            }
            fb.Dispose();   // the engine detaches and drops its dma-buf reference
            return 0;
        }

        private int Sync(Span<byte> arg)
        {
            if (arg.Length < Unsafe.SizeOf<xenshare_display_fb_sync>()) return -Errno.EFAULT;
            ref var op = ref MemoryMarshal.AsRef<xenshare_display_fb_sync>(arg);
            if (op.reserved != 0) return -Errno.EINVAL;
            lock (_lock)
            {
                if (!_framebuffers.TryGetValue(op.fb_id, out var fb)) return -Errno.ENOENT;
                op.bytes_copied = (ulong)fb.SyncForDevice();
            }
            return 0;
        }

        private int Stats(Span<byte> arg)
        {
            if (arg.Length < Unsafe.SizeOf<xenshare_display_stats>()) return -Errno.EFAULT;
            var e = driver.Engine;
            var stats = new xenshare_display_stats
            {
                flips = (ulong)e.Flips,
                frames_scanned_out = (ulong)e.FramesScannedOut,
                zero_copy_frames = (ulong)e.ZeroCopyFrames,
                bytes_scanned_out = (ulong)e.BytesScannedOut,
                cpu_bytes_copied = (ulong)e.CpuBytesCopied,
                gathered_bytes = (ulong)e.GatheredBytes,
                mapping_errors = (ulong)Interlocked.Read(ref driver._mappingErrors),
                framebuffers = (uint)e.FramebufferCount,
                direct_mapped = e.Device.UsesXenSwiotlb ? 1u : 0u,
                swiotlb_bytes_copied = (ulong)driver.Kernel.Swiotlb.BytesCopied,
            };
            MemoryMarshal.Write(arg, in stats);
            return 0;
        }

        /// <summary>Scans the front buffer out into <paramref name="buffer"/>: rows of width x 4 bytes, packed.
        /// ENODATA before the first flip (or after the front buffer was released), EINVAL when the buffer is
        /// smaller than a frame.</summary>
        public override long Read(GuestProcess caller, Span<byte> buffer)
        {
            var front = driver.Engine.Front;
            if (front is null || front.IsDisposed) return -Errno.ENODATA;
            long frame = (long)front.Width * 4 * front.Height;
            if (buffer.Length < frame) return -Errno.EINVAL;
            int row = front.Width * 4;
            int rc = driver.Engine.TryScanOut(front, buffer, (y, pixels, into) => pixels.CopyTo(into.Slice(y * row, row)));
            return rc < 0 ? rc : frame;
        }

        public override short Poll() => Posix.POLLIN;

        protected override void Release()
        {
            ScanoutFramebuffer[] all;
            lock (_lock)
            {
                _released = true;
                all = [.. _framebuffers.Values];
                _framebuffers.Clear();
            }
            foreach (var fb in all) fb.Dispose();
            driver.FileReleased();
        }
    }
}

/// <summary>The pixel formats the emulated display shows (DRM fourcc codes).</summary>
internal static class DisplayFourCC
{
    /// <summary>DRM_FORMAT_XRGB8888 ('XR24').</summary>
    public const uint XRGB8888 = 0x34325258;

    /// <summary>DRM_FORMAT_ARGB8888 ('AR24').</summary>
    public const uint ARGB8888 = 0x34325241;
}
