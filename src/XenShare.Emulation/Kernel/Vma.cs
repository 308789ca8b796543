namespace XenShare.Emulation.Kernel;

/// <summary>Called when a mapping goes away (vm_ops->close).</summary>
internal interface IVmaOwner
{
    void Close(Vma vma);
}

/// <summary>A mapping in an emulated process (vm_area_struct): its address range, protection, the file
/// and offset it came from, and the guest frames it shows. The address range is real: the frames are
/// mapped from machine memory into this .NET process.</summary>
internal sealed class Vma
{
    public long Start { get; set; }
    public long Length { get; init; }
    public int Prot { get; init; }
    public int Flags { get; init; }
    public long Offset { get; init; }
    public KernelFile? File { get; set; }
    public GuestFrame[] Pages { get; set; } = Array.Empty<GuestFrame>();
    public IVmaOwner? Owner { get; set; }
    /// <summary>Driver data (the gntdev map, the gntalloc grefs).</summary>
    public object? Tag { get; set; }
    public int PageCount => (int)(Length / Abi.XenPage.Size);
    public bool Writable => (Prot & Abi.Posix.PROT_WRITE) != 0;
    public bool Contains(long address, long length) => address >= Start && length >= 0 && address + length <= Start + Length;
}
