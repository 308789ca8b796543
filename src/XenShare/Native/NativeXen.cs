using XenShare.Abi;

namespace XenShare.Native;

/// <summary>Finds out whether this machine is a Xen guest and what of Xen's device interface it offers.</summary>
public static class NativeXen
{
    /// <summary>The grant-device (map foreign grants, dma-buf export/import) path.</summary>
    public const string GntDevPath = "/dev/xen/gntdev";

    /// <summary>The grant-allocation (share own pages) device path.</summary>
    public const string GntAllocPath = "/dev/xen/gntalloc";

    /// <summary>The event-channel device path.</summary>
    public const string EvtChnPath = "/dev/xen/evtchn";

    /// <summary>The fd number the dma-buf probe waits on; no export ever gets it.</summary>
    private const uint ProbeFd = 0x7fffffff;

    /// <summary>True if <c>/dev/xen/gntdev</c> exists (this is a Xen guest with gntdev loaded).</summary>
    public static bool IsXenGuest => File.Exists(GntDevPath);

    /// <summary>Probes the three device files (exists, opens read-write) and the gntdev dma-buf ioctls:
    /// IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED for fd 0x7fffffff with wait_to_ms 0 answers ENOENT when the
    /// ioctls are compiled in and ENOTTY when not. Never throws for a missing device.</summary>
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public static NativeXenProbe Probe()
    {
        using var process = new LinuxGuestProcess();
        int gntdev = process.Open(GntDevPath, Posix.O_RDWR | Posix.O_CLOEXEC);
        int? dmaBuf = null;
        if (gntdev >= 0)
        {
            var wait = new ioctl_gntdev_dmabuf_exp_wait_released { fd = ProbeFd, wait_to_ms = 0 };
            dmaBuf = process.Ioctl(gntdev, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, Api.IoctlArg.Of(ref wait));
        }

        return new NativeXenProbe
        {
            GntDevExists = File.Exists(GntDevPath),
            GntDevOpenResult = OpenResult(process, gntdev),
            GntAllocExists = File.Exists(GntAllocPath),
            GntAllocOpenResult = OpenResult(process, process.Open(GntAllocPath, Posix.O_RDWR | Posix.O_CLOEXEC)),
            EvtChnExists = File.Exists(EvtChnPath),
            EvtChnOpenResult = OpenResult(process, process.Open(EvtChnPath, Posix.O_RDWR | Posix.O_CLOEXEC)),
            DmaBufProbeResult = dmaBuf,
        };
    }

    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    private static int OpenResult(LinuxGuestProcess process, int fd)
    {
        if (fd < 0)
        {
            return fd;
        }

        process.Close(fd);
        return 0;
    }
}
