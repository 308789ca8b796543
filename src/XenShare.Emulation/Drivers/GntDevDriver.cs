using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>The gntdev driver of one kernel: registers <c>/dev/xen/gntdev</c> and tracks open files.
/// Lock: <c>_files</c> (a leaf).</summary>
internal sealed class GntDevDriver
{
    /// <summary>The device path.</summary>
    public const string Path = "/dev/xen/gntdev";

    private readonly HashSet<GntDevFile> _files = new();

    public GntDevDriver(GuestKernel kernel)
    {
        Kernel = kernel;
        Device = new XenShare.Emulation.Kernel.Dma.DmaDevice(kernel, "gntdev", XenShare.Emulation.Kernel.Dma.DmaTranslation.Physical);
        kernel.RegisterDevice(Path, (_, _) =>
        {
            var f = new GntDevFile(this);
            lock (_files) _files.Add(f);
            return f;
        });
        kernel.RegisterLeakCheck(CheckLeaks);
    }

    public GuestKernel Kernel { get; }

    /// <summary>The gntdev misc device (64-bit DMA mask, direct translation).</summary>
    public XenShare.Emulation.Kernel.Dma.DmaDevice Device { get; }

    public void OnFileReleased(GntDevFile file)
    {
        lock (_files) _files.Remove(file);
    }

    private IEnumerable<string> CheckLeaks()
    {
        lock (_files)
            if (_files.Count != 0) return [$"{Kernel.Domain}: {_files.Count} gntdev file(s) not released"];
        return [];
    }
}
