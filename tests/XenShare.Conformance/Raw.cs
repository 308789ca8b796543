using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Conformance;

/// <summary>Byte-level ioctl helpers over the seam: the exact structs the kernel receives.</summary>
public static class Raw
{
    public const int Page = 4096;

    /// <summary>gntdev's and gntalloc's per-call limits (module parameter defaults).</summary>
    public const int GntDevLimit = 64 * 1024;

    public const int GntAllocLimit = 1024;

    public static byte[] Bytes<T>(T value, int extra = 0) where T : unmanaged
    {
        var b = new byte[Unsafe.SizeOf<T>() + extra];
        MemoryMarshal.Write(b, in value);
        return b;
    }

    public static int Open(IGuestProcess p, string path)
    {
        int fd = p.Open(path, Posix.O_RDWR | Posix.O_CLOEXEC);
        Check.Ok(fd, "open " + path);
        return fd;
    }

    public static byte[] MapArg(DomainId from, ReadOnlySpan<uint> refs, uint countOverride = uint.MaxValue)
    {
        var arg = new byte[Math.Max(24, GntDevIoctl.MapGrantRefRefsOffset + 8 * refs.Length)];
        MemoryMarshal.Write(arg, countOverride == uint.MaxValue ? (uint)refs.Length : countOverride);
        for (int i = 0; i < refs.Length; i++)
        {
            MemoryMarshal.Write(arg.AsSpan(GntDevIoctl.MapGrantRefRefsOffset + 8 * i), (uint)from.Value);
            MemoryMarshal.Write(arg.AsSpan(GntDevIoctl.MapGrantRefRefsOffset + 4 + 8 * i), refs[i]);
        }
        return arg;
    }

    /// <summary>MAP_GRANT_REF: the result and the index.</summary>
    public static int MapGrantRef(IGuestProcess p, int fd, DomainId from, ReadOnlySpan<uint> refs, out ulong index)
    {
        var arg = MapArg(from, refs);
        int rc = p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg);
        index = MemoryMarshal.Read<ulong>(arg.AsSpan(8));
        return rc;
    }

    public static int UnmapGrantRef(IGuestProcess p, int fd, ulong index, uint count) =>
        p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, Bytes(new ioctl_gntdev_unmap_grant_ref { index = index, count = count }));

    public static byte[] ExportArg(DomainId domid, ReadOnlySpan<uint> refs, uint flags = 0, uint? domidRaw = null, uint? count = null)
    {
        var arg = new byte[Math.Max(20, GntDevIoctl.DmaBufRefsOffset + 4 * refs.Length)];
        MemoryMarshal.Write(arg, new ioctl_gntdev_dmabuf_exp_from_refs { flags = flags, count = count ?? (uint)refs.Length, domid = domidRaw ?? domid.Value });
        refs.CopyTo(MemoryMarshal.Cast<byte, uint>(arg.AsSpan(GntDevIoctl.DmaBufRefsOffset)));
        return arg;
    }

    /// <summary>EXP_FROM_REFS: the result and the new fd.</summary>
    public static int Export(IGuestProcess p, int gntdev, byte[] arg, out int fd)
    {
        int rc = p.Ioctl(gntdev, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, arg);
        fd = (int)MemoryMarshal.Read<uint>(arg.AsSpan(8));
        return rc;
    }

    public static int Export(IGuestProcess p, int gntdev, DomainId domid, ReadOnlySpan<uint> refs, out int fd, uint flags = 0) =>
        Export(p, gntdev, ExportArg(domid, refs, flags), out fd);

    public static int WaitReleased(IGuestProcess p, int gntdev, int key, uint ms) =>
        p.Ioctl(gntdev, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED,
            Bytes(new ioctl_gntdev_dmabuf_exp_wait_released { fd = (uint)key, wait_to_ms = ms }));

    public static byte[] ImportArg(int dmabuf, uint count, DomainId domid, uint reserved = 0)
    {
        var arg = new byte[Math.Max(20, GntDevIoctl.DmaBufRefsOffset + 4 * (int)Math.Min(count, 1 << 20))];
        MemoryMarshal.Write(arg, new ioctl_gntdev_dmabuf_imp_to_refs { fd = (uint)dmabuf, count = count, domid = domid.Value, reserved = reserved });
        return arg;
    }

    /// <summary>IMP_TO_REFS: the result and the refs.</summary>
    public static int Import(IGuestProcess p, int gntdev, int dmabuf, int count, DomainId domid, out uint[] refs, uint reserved = 0)
    {
        var arg = ImportArg(dmabuf, (uint)count, domid, reserved);
        int rc = p.Ioctl(gntdev, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, arg);
        refs = rc == 0 ? MemoryMarshal.Cast<byte, uint>(arg.AsSpan(GntDevIoctl.DmaBufRefsOffset, 4 * count)).ToArray() : [];
        return rc;
    }

    public static int ImportRelease(IGuestProcess p, int gntdev, int key) =>
        p.Ioctl(gntdev, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE, Bytes(new ioctl_gntdev_dmabuf_imp_release { fd = (uint)key }));

    public static byte[] AllocArg(DomainId to, int count, bool writable, uint? domidRaw = null)
    {
        var arg = new byte[Math.Max(24, GntAllocIoctl.GrefIdsOffset + 4 * count)];
        MemoryMarshal.Write(arg, new ioctl_gntalloc_alloc_gref { domid = (ushort)(domidRaw ?? to.Value), flags = writable ? GntAllocIoctl.GNTALLOC_FLAG_WRITABLE : (ushort)0, count = (uint)count });
        return arg;
    }

    /// <summary>ALLOC_GREF: the result, index and refs.</summary>
    public static int Alloc(IGuestProcess p, int gntalloc, DomainId to, int count, bool writable, out ulong index, out uint[] refs)
    {
        var arg = AllocArg(to, count, writable);
        int rc = p.Ioctl(gntalloc, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg);
        index = MemoryMarshal.Read<ulong>(arg.AsSpan(8));
        refs = rc == 0 ? MemoryMarshal.Cast<byte, uint>(arg.AsSpan(GntAllocIoctl.GrefIdsOffset, 4 * count)).ToArray() : [];
        return rc;
    }

    public static int Dealloc(IGuestProcess p, int gntalloc, ulong index, uint count) =>
        p.Ioctl(gntalloc, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Bytes(new ioctl_gntalloc_dealloc_gref { index = index, count = count }));

    public static int Sync(IGuestProcess p, int fd, ulong flags) =>
        p.Ioctl(fd, DmaBufIoctl.DMA_BUF_IOCTL_SYNC, Bytes(new dma_buf_sync { flags = flags }));

    public static Span<byte> Mem(long address, int length) => GuestMemory.AsSpan(address, length);
}
