using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// A gntdev map (struct gntdev_grant_map): <see cref="Count"/> grants at page index <see cref="Index"/>
/// of one gntdev file, the guest pages they are mapped into, and the maptrack handles while mapped.
/// Guarded by the owning <see cref="GntDevFile"/>'s lock, except the arrays written while mapping or
/// unmapping, which only the single mapper (mmap or export) or unmapper (the one that set
/// <see cref="UnmapPending"/>) touches.
/// </summary>
internal sealed class GrantMap : IPageIdleWaiter
{
    public GrantMap(GntDevFile file, int count)
    {
        File = file;
        Count = count;
        DomIds = new ushort[count];
        Refs = new uint[count];
        Handles = new int[count];
        Array.Fill(Handles, -1);
        Pages = new GuestFrame[count];
    }

    /// <summary>The gntdev file the map belongs to (it outlives the file while an unmap waits).</summary>
    public GntDevFile File { get; }
    public int Index { get; set; }
    public int Count { get; }
    public ushort[] DomIds { get; }
    public uint[] Refs { get; }
    public int[] Handles { get; }
    public GuestFrame[] Pages { get; }
    /// <summary>Set when the pages are one contiguous DMA allocation (export with WC/COHERENT).</summary>
    public bool DmaBacked { get; set; }
    public bool Readonly { get; set; }
    public bool InUse { get; set; }
    public int Users { get; set; } = 1;
    public bool OnList { get; set; }
    public int LiveGrants { get; set; }
    /// <summary>An unmap of the live grants has started and waits for the pages' extra references to go.</summary>
    public bool UnmapPending { get; set; }
    public uint NotifyAction { get; set; }
    public long NotifyOffset { get; set; }
    public uint NotifyPort { get; set; }

    void IPageIdleWaiter.OnPagesIdle() => File.OnPagesIdle(this);
}
