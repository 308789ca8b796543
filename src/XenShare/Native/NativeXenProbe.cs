using System.Globalization;
using System.Text;
using XenShare.Abi;

namespace XenShare.Native;

/// <summary>
/// What <see cref="NativeXen.Probe"/> found on this machine: which Xen device files exist and can be
/// opened (read-write), and whether the gntdev dma-buf ioctls are compiled into the kernel.
/// </summary>
public sealed record NativeXenProbe
{
    /// <summary>Whether <c>/dev/xen/gntdev</c> exists.</summary>
    public required bool GntDevExists { get; init; }

    /// <summary>0 if <c>/dev/xen/gntdev</c> opened read-write, else the <c>-errno</c> open(2) returned.</summary>
    public required int GntDevOpenResult { get; init; }

    /// <summary>Whether <c>/dev/xen/gntalloc</c> exists.</summary>
    public required bool GntAllocExists { get; init; }

    /// <summary>0 if <c>/dev/xen/gntalloc</c> opened read-write, else the <c>-errno</c> open(2) returned.</summary>
    public required int GntAllocOpenResult { get; init; }

    /// <summary>Whether <c>/dev/xen/evtchn</c> exists.</summary>
    public required bool EvtChnExists { get; init; }

    /// <summary>0 if <c>/dev/xen/evtchn</c> opened read-write, else the <c>-errno</c> open(2) returned.</summary>
    public required int EvtChnOpenResult { get; init; }

    /// <summary>The raw result of IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED for an fd that was never exported
    /// (-ENOENT: the dma-buf ioctls exist; -ENOTTY: not compiled in), or null when gntdev could not be
    /// opened.</summary>
    public required int? DmaBufProbeResult { get; init; }

    /// <summary>Whether gntdev can be opened.</summary>
    public bool CanOpenGntDev => GntDevOpenResult == 0;

    /// <summary>Whether gntalloc can be opened.</summary>
    public bool CanOpenGntAlloc => GntAllocOpenResult == 0;

    /// <summary>Whether evtchn can be opened.</summary>
    public bool CanOpenEvtChn => EvtChnOpenResult == 0;

    /// <summary>True if the gntdev dma-buf ioctls are compiled in, false if they are not
    /// (CONFIG_XEN_GNTDEV_DMABUF off), null if it could not be told.</summary>
    public bool? HasGntDevDmaBuf => DmaBufProbeResult switch
    {
        -Errno.ENOENT => true,
        -Errno.ENOTTY => false,
        _ => null,
    };

    /// <summary>True when all three devices open and the dma-buf ioctls are there: everything XenShare uses.</summary>
    public bool IsComplete => CanOpenGntDev && CanOpenGntAlloc && CanOpenEvtChn && HasGntDevDmaBuf == true;

    /// <summary>One line per finding, e.g. <c>/dev/xen/gntdev: opens</c>.</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        AppendDevice(text, NativeXen.GntDevPath, GntDevExists, GntDevOpenResult);
        AppendDevice(text, NativeXen.GntAllocPath, GntAllocExists, GntAllocOpenResult);
        AppendDevice(text, NativeXen.EvtChnPath, EvtChnExists, EvtChnOpenResult);
        text.Append("gntdev dma-buf ioctls: ");
        text.Append(HasGntDevDmaBuf switch
        {
            true => "available",
            false => "not compiled in (ENOTTY)",
            null when DmaBufProbeResult is null => "unknown (gntdev not opened)",
            null => "unknown (" + Describe(DmaBufProbeResult.Value) + ")",
        });
        return text.ToString();
    }

    private static void AppendDevice(StringBuilder text, string path, bool exists, int openResult)
    {
        text.Append(path).Append(": ");
        text.Append(!exists ? "missing" : openResult == 0 ? "opens" : "present, open fails with " + Describe(openResult));
        text.Append('\n');
    }

    private static string Describe(int result) =>
        result < 0
            ? Errno.Name(-result)
            : result.ToString(CultureInfo.InvariantCulture);
}
