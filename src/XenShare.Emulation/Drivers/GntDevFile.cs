using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// An open <c>/dev/xen/gntdev</c> (struct gntdev_priv): a list of grant maps in one page-index space
/// (first fit), mmap of a map, unmap notify, grant copy, and - through <see cref="GntDevDmaBuf"/> - the
/// dma-buf ioctls (GD01-GD09).
/// </summary>
/// <remarks>
/// Each map's lifecycle (users, list membership, mapping and unmapping, backing) is its
/// <see cref="GrantMap"/>'s; this file looks maps up and turns ioctls, mmap and release into map operations.
/// Lock: the map-list lock (<see cref="MapIndexSpace.SyncRoot"/> of <see cref="Maps"/>) guards the list and
/// every map's bookkeeping; a lookup holds it across the map operation it leads to, so finding a map and
/// claiming it are one step. Hypercalls are made without it. Order: process locks &lt; this lock &lt; kernel
/// grant refs &lt; page references &lt; hypervisor.
/// </remarks>
internal sealed class GntDevFile : KernelFile, IVmaOwner
{
    private readonly MapIndexSpace _maps = new();
    private readonly GntDevDriver _driver;

    public GntDevFile(GntDevDriver driver)
    {
        _driver = driver;
        Kernel = driver.Kernel;
        DmaBuf = new GntDevDmaBuf(this);
    }

    public GuestKernel Kernel { get; }
    public GntDevDmaBuf DmaBuf { get; }
    /// <summary>The gntdev misc device: the DMA device of WC/coherent allocations and the importer device.</summary>
    public Kernel.Dma.DmaDevice Device => _driver.Device;
    public XenHost Host => Kernel.Host;
    public Domain Domain => Kernel.Domain;
    public int Limit => Kernel.Options.GntDevLimit;

    /// <summary>gntdev's use_ptemod: true only for x86 PV guests.</summary>
    public bool UsePtemod => Domain.Type == DomainType.X86Pv;

    /// <summary>The file's map list (page-index space) and its lock.</summary>
    public MapIndexSpace Maps => _maps;

    public int MapCount { get { lock (_maps.SyncRoot) return _maps.Count; } }

    public override int Ioctl(GuestProcess caller, uint request, Span<byte> arg)
    {
        if (request == GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF) return MapGrantRef(arg);
        if (request == GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF) return UnmapGrantRef(arg);
        if (request == GntDevIoctl.IOCTL_GNTDEV_GET_OFFSET_FOR_VADDR) return GetOffsetForVaddr(caller, arg);
        if (request == GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY) return SetUnmapNotify(arg);
        if (request == GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY) return GrantCopy(caller, arg);
        if (Kernel.Options.GntDevDmaBuf)
        {
            if (request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS) return DmaBuf.ExportFromRefs(caller, arg);
            if (request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED) return DmaBuf.WaitReleased(arg);
            if (request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS) return DmaBuf.ImportToRefs(caller, arg);
            if (request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE) return DmaBuf.ImportRelease(arg);
        }
        // GD05: SET_MAX_GRANTS is not in Linux's switch either; GD08: unknown -> ENOTTY.
        return -Errno.ENOTTY;
    }

    public override Task<int>? IoctlAsync(GuestProcess caller, uint request, ReadOnlyMemory<byte> arg, CancellationToken cancellationToken)
    {
        if (Kernel.Options.GntDevDmaBuf && request == GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED)
            return DmaBuf.WaitReleasedAsync(arg.Span, cancellationToken);
        return null;
    }

    // ------------------------------------------------------------------ map list

    /// <summary>Checks a page count against the per-call limit (gntdev_test_page_count).</summary>
    public bool CountOk(uint count) => count != 0 && count <= (uint)Limit;

    /// <summary>The listed map at page <paramref name="index"/> of <paramref name="count"/> pages (any size
    /// when 0). Call with the map-list lock held.</summary>
    private GrantMap? FindMapIndexLocked(ulong index, int count) =>
        index <= int.MaxValue ? _maps.Find((int)index, count) : null;

    // ------------------------------------------------------------------ ioctls

    private int MapGrantRef(Span<byte> arg)
    {
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_map_grant_ref>()) return -Errno.EFAULT;
        ref var op = ref MemoryMarshal.AsRef<ioctl_gntdev_map_grant_ref>(arg);
        if (!CountOk(op.count)) return -Errno.EINVAL;                                // GD01
        int refsAt = GntDevIoctl.MapGrantRefRefsOffset;
        if ((long)refsAt + 8L * op.count > arg.Length) return -Errno.EFAULT;
        var map = GrantMap.Create(this, (int)op.count, GrantMapBacking.Unpopulated);
        if (map is null) return -Errno.ENOMEM;
        var refs = MemoryMarshal.Cast<byte, ioctl_gntdev_grant_ref>(arg.Slice(refsAt, 8 * (int)op.count));
        for (int i = 0; i < refs.Length; i++) map.SetGrant(i, (ushort)refs[i].domid, refs[i].@ref);
        op.index = (ulong)map.Publish() << XenPage.Shift;
        return 0;
    }

    private int UnmapGrantRef(Span<byte> arg)
    {
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_unmap_grant_ref>()) return -Errno.EFAULT;
        var op = MemoryMarshal.Read<ioctl_gntdev_unmap_grant_ref>(arg);
        GrantMap? map;
        lock (_maps.SyncRoot)
        {
            map = (op.index & XenPage.Mask) == 0 ? FindMapIndexLocked(op.index >> XenPage.Shift, (int)op.count) : null;
            if (map is null || !map.RemoveFromList()) return -Errno.ENOENT;            // GD03
        }
        map.Release();   // the list's user
        return 0;
    }

    private int GetOffsetForVaddr(GuestProcess caller, Span<byte> arg)
    {
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_get_offset_for_vaddr>()) return -Errno.EFAULT;
        ref var op = ref MemoryMarshal.AsRef<ioctl_gntdev_get_offset_for_vaddr>(arg);
        var vma = op.vaddr <= long.MaxValue ? caller.FindVma((long)op.vaddr) : null;
        if (vma is null || vma.File != this || vma.Tag is not GrantMap map) return -Errno.EINVAL;  // GD04
        op.offset = (ulong)map.Index << XenPage.Shift;
        op.count = (uint)map.Count;
        return 0;
    }

    private int SetUnmapNotify(Span<byte> arg)
    {
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_unmap_notify>()) return -Errno.EFAULT;
        var op = MemoryMarshal.Read<ioctl_gntdev_unmap_notify>(arg);
        const uint valid = GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT;
        if ((op.action & ~valid) != 0) return -Errno.EINVAL;                           // GD06
        if ((op.action & GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT) != 0 && !Kernel.IsUserPort(op.event_channel_port)) return -Errno.EINVAL;
        lock (_maps.SyncRoot)
        {
            var found = op.index >> XenPage.Shift <= int.MaxValue ? _maps.FindContaining((long)(op.index >> XenPage.Shift)) : null;
            if (found is null) return -Errno.ENOENT;
            return found.SetUnmapNotify(op.action, op.event_channel_port, (long)(op.index - ((ulong)found.Index << XenPage.Shift)));
        }
    }

    private int GrantCopy(GuestProcess caller, Span<byte> arg)
    {
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_grant_copy>()) return -Errno.EFAULT;
        var op = MemoryMarshal.Read<ioctl_gntdev_grant_copy>(arg);
        if (op.count == 0) return 0;
        int segSize = Unsafe.SizeOf<gntdev_grant_copy_segment>();
        if (op.count > int.MaxValue / segSize || op.segments > long.MaxValue) return -Errno.EFAULT;
        long userSegs = (long)op.segments;
        Span<GnttabCopy> ops = stackalloc GnttabCopy[2];
        Span<GuestFrame> pinned = stackalloc GuestFrame[4];
        Span<byte> segBytes = stackalloc byte[segSize];
        Span<byte> st = stackalloc byte[2];
        // Segment by segment, copied in and its status copied out as Linux's __copy_from_user /
        // __put_user do: the user array is never read in place, so a concurrent munmap cannot fault us.
        for (long s = 0; s < op.count; s++)
        {
            int rc = caller.CopyFromUser(userSegs + s * segSize, segBytes);
            if (rc < 0) return rc;
            var seg = MemoryMarshal.Read<gntdev_grant_copy_segment>(segBytes);
            bool srcG = (seg.flags & GntCopy.source_gref) != 0, dstG = (seg.flags & GntCopy.dest_gref) != 0;
            if (!srcG && !dstG) return -Errno.EINVAL;                                        // GD07
            if (srcG && seg.source.foreign.offset + seg.len > XenPage.Size) return -Errno.EINVAL;
            if (dstG && seg.dest.foreign.offset + seg.len > XenPage.Size) return -Errno.EINVAL;
            int nops = 0, npinned = 0, done = 0;
            try
            {
                do
                {
                    ref var g = ref ops[nops];
                    g = default;
                    g.Flags = (ushort)(seg.flags & (GntCopy.source_gref | GntCopy.dest_gref));
                    int chunk = seg.len - done;
                    rc = Operand(caller, seg.source, srcG, write: false, done, ref chunk, pinned, ref npinned, out g.Source);
                    if (rc < 0) return rc;
                    rc = Operand(caller, seg.dest, dstG, write: true, done, ref chunk, pinned, ref npinned, out g.Dest);
                    if (rc < 0) return rc;
                    g.Len = (ushort)chunk;
                    done += chunk;
                    nops++;
                }
                while (done < seg.len && nops < 2);
                Host.Copy(Domain, ops[..nops]);
            }
            finally
            {
                for (int i = 0; i < npinned; i++) Kernel.PutPage(pinned[i]);
            }
            short status = GntSt.okay;
            for (int i = 0; i < nops; i++) if (ops[i].Status != GntSt.okay) { status = ops[i].Status; break; }
            MemoryMarshal.Write(st, status);
            rc = caller.CopyToUser(userSegs + s * segSize + 20, st);                              // status @20
            if (rc < 0) return rc;
        }
        return 0;
    }

    /// <summary>One side of a copy chunk starting <paramref name="done"/> bytes into the segment: a foreign
    /// grant as given, or a local address resolved to its pinned page (the chunk then stops at the page end).</summary>
    private static int Operand(GuestProcess caller, in gntdev_grant_copy_ptr side, bool foreign, bool write, int done,
        ref int chunk, Span<GuestFrame> pinned, ref int npinned, out GnttabCopyPtr ptr)
    {
        if (foreign)
        {
            ptr = new GnttabCopyPtr { RefOrGfn = side.foreign.@ref, Domain = new DomainId(side.foreign.domid), Offset = (ushort)(side.foreign.offset + done) };
            return 0;
        }
        long va = (long)side.virt + done;
        int off = (int)(va & XenPage.Mask);
        chunk = Math.Min(chunk, XenPage.Size - off);
        int rc = caller.PinUserPage(va, write, out var gfn);
        if (rc < 0) { ptr = default; return rc; }
        pinned[npinned++] = gfn;
        ptr = new GnttabCopyPtr { RefOrGfn = gfn.Value, Domain = DomainId.Self, Offset = (ushort)off };
        return 0;
    }

    // ------------------------------------------------------------------ mmap

    public override int Mmap(GuestProcess caller, Vma vma)
    {
        if (vma.Writable && (vma.Flags & Posix.MAP_SHARED) == 0) return -Errno.EINVAL;   // GD02
        GrantMap? map;
        lock (_maps.SyncRoot)
        {
            map = FindMapIndexLocked((ulong)vma.Offset >> XenPage.Shift, vma.PageCount);
            if (map is null || !map.TryUse(vma.PageCount)) return -Errno.EINVAL;
        }
        uint flags = GntMap.host_map | (vma.Writable ? 0 : GntMap.@readonly);
        int rc = map.MapGrants(flags);
        if (rc < 0)
        {
            map.Release();   // the mmap's user
            return rc;
        }
        vma.Pages = map.Pages;
        vma.Owner = this;
        vma.Tag = map;
        return 0;
    }

    /// <summary>The mmap of a map went (GD03). On x86 PV (use_ptemod) the grants are unmapped now, as
    /// Linux's MMU notifier does (at once, or when the pages' extra references go), notify byte included;
    /// on an auto-translated domain only the mmap's user is dropped: the grants stay mapped, the map stays
    /// listed (its in-use flag stays, so it cannot be mmapped again) and the unmap and its notification
    /// wait for the last user (UNMAP_GRANT_REF or the file's release).</summary>
    void IVmaOwner.Close(Vma vma)
    {
        var map = (GrantMap)vma.Tag!;
        if (UsePtemod) map.StartUnmap();
        map.Release();   // the mmap's user
    }

    /// <summary>EI11, and a deliberate deviation from Linux: imports are released when the last fd (or
    /// mmap) of the gntdev file goes, not only when the file itself is released. Exported buffers pin the
    /// file (EX12), so importing one's own export would otherwise be a reference cycle that outlives the
    /// process (reliability finding R5; Linux has that cycle).</summary>
    protected override void OnLastUserReference() => DmaBuf.ReleaseAllImports();

    /// <summary>GD09: every map left on the list loses the list's reference; maps still held by an mmap
    /// stay until that goes. Runs only once every exported dma-buf has let go of this file (EX12).</summary>
    protected override void Release()
    {
        DmaBuf.ReleaseAllImports();   // EI11
        List<GrantMap> maps;
        lock (_maps.SyncRoot) maps = _maps.All();
        foreach (var m in maps) m.Unpublish();
        _driver.OnFileReleased(this);
    }
}
