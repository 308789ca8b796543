using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// What the emulated importer devices' drivers share (<see cref="DisplayDriver"/>, <see cref="IommuDriver"/>): a
/// device file at <c>/dev/xenshare/&lt;name&gt;</c> registered in a kernel, the count of its open files, and a
/// leak check that reports open files and whatever the device still holds.
/// </summary>
/// <remarks>No lock: the open-file count is Interlocked.</remarks>
internal abstract class ImporterDeviceDriver
{
    private int _openFiles;

    /// <summary>Registers the device file of <paramref name="name"/> in <paramref name="kernel"/>.</summary>
    protected ImporterDeviceDriver(GuestKernel kernel, string name)
    {
        Kernel = kernel;
        Path = "/dev/xenshare/" + name;
        kernel.RegisterDevice(Path, (_, _) =>
        {
            Interlocked.Increment(ref _openFiles);
            return OpenFile();
        });
        kernel.RegisterLeakCheck(() =>
        {
            var problems = new List<string>();
            int open = Volatile.Read(ref _openFiles);
            if (open != 0) problems.Add($"{kernel.Domain}: {open} {Path} file(s) open");
            int held = HeldCount;
            if (held != 0) problems.Add($"{kernel.Domain}: {held} {HeldWhat} still held by {Path}");
            return problems;
        });
    }

    /// <summary>The kernel.</summary>
    public GuestKernel Kernel { get; }

    /// <summary>The device path.</summary>
    public string Path { get; }

    /// <summary>What the device holds for its files now (framebuffers, imports).</summary>
    protected abstract int HeldCount { get; }

    /// <summary>The name of what <see cref="HeldCount"/> counts, for the leak report.</summary>
    protected abstract string HeldWhat { get; }

    /// <summary>A new open file of the device.</summary>
    protected abstract KernelFile OpenFile();

    /// <summary>An open file was released.</summary>
    protected void FileReleased() => Interlocked.Decrement(ref _openFiles);
}
