#pragma warning disable CA1822 // temporary
using XenShare.Abi;
using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>The dma-buf part of one gntdev file (gntdev_dmabuf_priv). TEMPORARY: filled in by the dma-buf work.</summary>
internal sealed class GntDevDmaBuf
{
    private readonly GntDevFile _file;

    public GntDevDmaBuf(GntDevFile file) => _file = file;

    public int ExportFromRefs(GuestProcess caller, Span<byte> arg) => -Errno.ENOTTY;
    public int WaitReleased(Span<byte> arg) => -Errno.ENOTTY;
    public int ImportToRefs(GuestProcess caller, Span<byte> arg) => -Errno.ENOTTY;
    public int ImportRelease(Span<byte> arg) => -Errno.ENOTTY;
    public void ReleaseAllImports() { }
    public void FreeDmaBacking(GrantMap map) => throw new InvalidOperationException(_file.ToString());
}
