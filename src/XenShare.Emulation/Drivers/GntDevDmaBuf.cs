using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// The dma-buf part of one gntdev file (gntdev_dmabuf_priv): export grant refs as a dma-buf (EX01-EX13),
/// wait for an export's release (EW01-EW06, D01, D02), import a local dma-buf as grant refs and release
/// it (EI01-EI11).
/// </summary>
/// <remarks>
/// Lock: <c>_lock</c> guards the export and import tables and each export's release task. Both are keyed
/// by the fd number recorded at export/import time (O(1) lookup where Linux walks a list); a key may hold
/// a chain of entries when a number is reused while an older buffer lives, newest first (EW01). It is
/// taken alone (no other lock is held while it is taken, none is taken under it); maps, fds, dma-bufs and
/// grant refs are handled outside it, and exporter callbacks (attach, map, release) run without it.
/// </remarks>
internal sealed class GntDevDmaBuf
{
    private readonly object _lock = new();
    private readonly GntDevFile _file;
    private readonly Dictionary<uint, Export> _exports = new();
    private readonly Dictionary<uint, Import> _imports = new();
    private DmaBufOps? _ops;

    public GntDevDmaBuf(GntDevFile file) => _file = file;

    private GuestKernel Kernel => _file.Kernel;

    public int ExportCount { get { lock (_lock) return Count(_exports); } }

    public int ImportCount { get { lock (_lock) return Count(_imports); } }

    private static int Count<T>(Dictionary<uint, T> table) where T : class, IChained<T>
    {
        int n = 0;
        foreach (var head in table.Values) for (T? e = head; e is not null; e = e.Older) n++;
        return n;
    }

    private interface IChained<T> where T : class
    {
        T? Older { get; set; }
    }

    private sealed class Export : IChained<Export>
    {
        public required GrantMap Map;
        public required uint Fd;
        /// <summary>Completed at release; every waiter, blocking or asynchronous, waits on its task. Created
        /// by the first waiter (under the lock), so an export nobody waits for costs nothing (P7).</summary>
        public TaskCompletionSource? Released;
        public Export? Older { get; set; }
    }

    private sealed class ExportAttachment
    {
        public SgTable? Table;
        public DmaDirection Direction = DmaDirection.None;
    }

    private sealed class Import : IChained<Import>
    {
        public required uint Fd;
        public required DmaBufMapping Mapping;
        public required uint[] Refs;
        public Import? Older { get; set; }
    }

    private static void Push<T>(Dictionary<uint, T> table, uint key, T item) where T : class, IChained<T>
    {
        if (table.TryGetValue(key, out var head)) item.Older = head;
        table[key] = item;
    }

    private static bool Unlink<T>(Dictionary<uint, T> table, uint key, T item) where T : class, IChained<T>
    {
        if (!table.TryGetValue(key, out var head)) return false;
        if (head == item)
        {
            if (item.Older is null) table.Remove(key); else table[key] = item.Older;
            return true;
        }
        for (var e = head; e.Older is not null; e = e.Older)
            if (e.Older == item) { e.Older = item.Older; return true; }
        return false;
    }

    // ------------------------------------------------------------------ export

    public int ExportFromRefs(GuestProcess caller, Span<byte> arg)
    {
        if (_file.UsePtemod) return -Errno.EINVAL;                                               // EX01
        int refsAt = GntDevIoctl.DmaBufRefsOffset;
        // copy_from_user(sizeof(op)) includes refs[1]: a 16..19-byte argument is EFAULT (reliability fix:
        // checking only the header let AsRef throw out of the ioctl).
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_dmabuf_exp_from_refs>()) return -Errno.EFAULT;
        ref var op = ref MemoryMarshal.AsRef<ioctl_gntdev_dmabuf_exp_from_refs>(arg);
        if (!_file.CountOk(op.count)) return -Errno.EINVAL;                                     // EX02
        if ((long)refsAt + 4L * op.count > arg.Length) return -Errno.EFAULT;
        uint flags = op.flags;
        if ((flags & GntDevIoctl.GNTDEV_DMA_FLAG_WC) != 0 && (flags & GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT) != 0)
            return -Errno.EINVAL;                                                               // EX03
        bool dma = (flags & (GntDevIoctl.GNTDEV_DMA_FLAG_WC | GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT)) != 0;
        int count = (int)op.count;

        var map = GrantMap.Create(_file, count, dma ? GrantMapBacking.Dma : GrantMapBacking.Unpopulated);   // EX04
        if (map is null) return -Errno.ENOMEM;                                                  // EX07
        var refs = MemoryMarshal.Cast<byte, uint>(arg.Slice(refsAt, 4 * count));
        ushort domid = (ushort)op.domid;   // the real driver cuts the domid to 16 bits
        for (int i = 0; i < count; i++) map.SetGrant(i, domid, refs[i]);
        map.PublishExported();   // the export's own user besides the list's, in use (see PublishExported)

        // EX05: always writable; x86 kernels also ask for a device mapping.
        uint mapFlags = GntMap.host_map | (_file.Domain.IsX86 ? GntMap.device_map : 0);
        int rc = map.MapGrants(mapFlags);
        if (rc < 0) { DropMap(map); return rc; }                                               // EX06

        int fd = caller.ReserveFd(cloexec: true);                                               // EX08: reserve first
        if (fd < 0) { DropMap(map); return fd; }                                                // EX07: EMFILE
        var export = new Export { Map = map, Fd = (uint)fd };
        var buffer = DmaBufObject.Export(Kernel, ExporterOps, (long)count * XenPage.Size, export, out int errno);
        if (buffer is null) { caller.UnreserveFd(fd); DropMap(map); return errno; }
        _file.Get();                                                                            // EX12: pin the gntdev file
        lock (_lock) Push(_exports, (uint)fd, export);
        op.fd = (uint)fd;
        caller.InstallFd(fd, buffer.File);                                                      // EX08: install last
        return 0;
    }

    /// <summary>The export lets go of its map: the list's user (unless UNMAP_GRANT_REF dropped it), then
    /// the export's own; the last one unmaps the grants and frees the backing.</summary>
    private static void DropMap(GrantMap map)
    {
        map.Unpublish();
        map.Release();
    }

    /// <summary>The exporter's ops, shared by every buffer this file exports (each buffer's export record
    /// is its ExporterData), so an export allocates no delegates (P7).</summary>
    private DmaBufOps ExporterOps => _ops ??= new DmaBufOps
    {
        // EX10: any device may attach; the table is built at the first map and cached per attachment.
        Attach = a => { a.ExporterData = new ExportAttachment(); return 0; },
        Detach = a =>
        {
            var ea = (ExportAttachment)a.ExporterData!;
            if (ea.Table is not null) a.Device.Unmap(ea.Table);
            ea.Table = null;
        },
        Map = (DmaBufAttachment a, DmaDirection dir, out int errno) =>
        {
            errno = 0;
            var ea = a.ExporterData as ExportAttachment;
            if (dir == DmaDirection.None || ea is null) { errno = -Errno.EINVAL; return null; }
            // Review concern 1: Direction and Table are set together after a successful map, and the
            // direction starts at None (refused above), so a matching direction implies a table.
            if (ea.Direction == dir) return ea.Table;
            if (ea.Direction != DmaDirection.None) { errno = -Errno.EBUSY; return null; }
            var t = a.Device.Map(((Export)a.Buffer.ExporterData!).Map.Pages, dir);
            if (t is null) { errno = -Errno.ENOMEM; return null; }
            ea.Table = t;
            ea.Direction = dir;
            return t;
        },
        // Review concern 2: unmap keeps the cached mapping; detach tears it down.
        Unmap = (_, _, _) => { },
        Release = b => ReleaseExport((Export)b.ExporterData!),
    };

    /// <summary>The last reference to an exported buffer is gone (EX13): unmap the grants and free the
    /// backing, then wake every waiter (D01, D02), then unpin the gntdev file (EX12).</summary>
    private void ReleaseExport(Export export)
    {
        DropMap(export.Map);
        TaskCompletionSource? waiters;
        lock (_lock)
        {
            // Waiters register under this lock before we unlink, or find nothing (ENOENT): none is lost.
            Unlink(_exports, export.Fd, export);
            waiters = export.Released;
        }
        waiters?.TrySetResult();
        _file.Put();
    }

    /// <summary>IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, blocking: the wait of <see cref="WaitReleasedAsync"/>,
    /// waited for on the calling thread (EW03: 0 or ETIMEDOUT; EIO when the domain is destroyed meanwhile).
    /// Not interruptible (EW06). The thread counts as in a release wait (<see cref="GuestKernel.IsInReleaseWait"/>)
    /// while it blocks.</summary>
    public int WaitReleased(Span<byte> arg)
    {
        var released = Register(arg, out int rc, out uint ms);
        if (released is null) return rc;
        if (released.IsCompleted) return 0;
        // The release's own task is waited on directly: its completion wakes this thread inline, so a
        // blocked waiter never needs a thread-pool thread to be woken.
        Kernel.EnterReleaseWait();
        try { return released.Wait((int)Math.Min(ms, int.MaxValue), Kernel.HaltToken) ? 0 : -Errno.ETIMEDOUT; }   // EW03
        catch (OperationCanceledException) { return -Errno.EIO; }                                              // the domain was destroyed
        finally { Kernel.LeaveReleaseWait(); }
    }

    /// <summary>The asynchronous form of <see cref="WaitReleased"/>: same lookup and results, no thread
    /// blocked; the caller's cancellation ends its wait only.</summary>
    public Task<int> WaitReleasedAsync(ReadOnlySpan<byte> arg, CancellationToken cancellationToken)
    {
        var released = Register(arg, out int rc, out uint ms);
        if (released is null) return Task.FromResult(rc);
        if (released.IsCompleted) return Task.FromResult(0);
        if (ms == 0) return Task.FromResult(-Errno.ETIMEDOUT);
        return Wait(released, ms, Kernel.HaltToken, cancellationToken);

        static async Task<int> Wait(Task released, uint ms, CancellationToken halt, CancellationToken ct)
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(halt, ct);
            try
            {
                await released.WaitAsync(TimeSpan.FromMilliseconds(Math.Min(ms, int.MaxValue)), both.Token).ConfigureAwait(false);
                return 0;
            }
            catch (TimeoutException)
            {
                return -Errno.ETIMEDOUT;
            }
            catch (OperationCanceledException) when (halt.IsCancellationRequested && !ct.IsCancellationRequested)
            {
                return -Errno.EIO;   // the domain was destroyed
            }
        }
    }

    /// <summary>Both waits' lookup: the newest export recorded under the argument's fd (EW01), and the task
    /// its release completes, or null with <paramref name="rc"/> (EFAULT, ENOENT). A waiter that finds the
    /// export registers under the lock that release takes to unlink it, so a release either completes the
    /// waiter's task or happened before the lookup (then ENOENT): no lost wake-up (EW04).</summary>
    private Task? Register(ReadOnlySpan<byte> arg, out int rc, out uint ms)
    {
        ms = 0;
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_dmabuf_exp_wait_released>()) { rc = -Errno.EFAULT; return null; }
        var op = MemoryMarshal.Read<ioctl_gntdev_dmabuf_exp_wait_released>(arg);
        ms = op.wait_to_ms;
        lock (_lock)
        {
            if (!_exports.TryGetValue(op.fd, out var export)) { rc = -Errno.ENOENT; return null; }
            rc = 0;
            return (export.Released ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    // ------------------------------------------------------------------ import

    public int ImportToRefs(GuestProcess caller, Span<byte> arg)
    {
        int refsAt = GntDevIoctl.DmaBufRefsOffset;
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_dmabuf_imp_to_refs>()) return -Errno.EFAULT;   // as in export
        ref var op = ref MemoryMarshal.AsRef<ioctl_gntdev_dmabuf_imp_to_refs>(arg);
        if (!_file.CountOk(op.count)) return -Errno.EINVAL;                                     // EI01
        if ((long)refsAt + 4L * op.count > arg.Length) return -Errno.EFAULT;
        int count = (int)op.count;
        var device = _file.Device;
        // EI01 (EBADF / EINVAL), EI02: attach and map DMA_BIDIRECTIONAL, held until release; an exporter's
        // refusal is returned as is.
        var mapping = DmaBufMapping.Import(caller, (int)op.fd, device, DmaDirection.Bidirectional, out int errno, out _);
        if (mapping is null) return errno;
        var (buffer, table) = (mapping.Buffer, mapping.Table);
        int rc = 0;
        GuestFrame[]? frames = null;
        if (table.Segments.Count == 0 || table.Segments[0].Offset != 0) rc = -Errno.EINVAL;     // EI03
        else if (buffer.Size != (long)count * XenPage.Size) rc = -Errno.EINVAL;
        else
        {
            // EI05: frames from the DMA addresses (works for buffers without ordinary pages).
            frames = new GuestFrame[count];
            int n = 0;
            foreach (var s in table.Segments)
                for (int p = 0; p < s.Length / XenPage.Size && rc == 0; p++)
                {
                    if (n >= count || !device.TryTranslate(s.DmaAddress + ((ulong)p << XenPage.Shift), out var g)) rc = -Errno.EINVAL;
                    else frames[n++] = g;
                }
            if (rc == 0 && n != count) rc = -Errno.EINVAL;
        }
        var refs = new uint[count];
        if (rc == 0) rc = Kernel.Grants.Allocate(refs);                                         // EI04: ENOSPC
        if (rc < 0)
        {
            mapping.Dispose();
            return rc;
        }
        for (int i = 0; i < count; i++) Kernel.Grants.Grant(refs[i], new DomainId((ushort)op.domid), frames![i], readOnly: false);
        var import = new Import { Fd = op.fd, Mapping = mapping, Refs = refs };
        lock (_lock) Push(_imports, op.fd, import);
        refs.AsSpan().CopyTo(MemoryMarshal.Cast<byte, uint>(arg.Slice(refsAt, 4 * count)));
        return 0;
    }

    public int ImportRelease(Span<byte> arg)
    {
        if (arg.Length < Unsafe.SizeOf<ioctl_gntdev_dmabuf_imp_release>()) return -Errno.EFAULT;
        var op = MemoryMarshal.Read<ioctl_gntdev_dmabuf_imp_release>(arg);
        Import? import;
        lock (_lock)
        {
            if (!_imports.TryGetValue(op.fd, out import)) return -Errno.ENOENT;                 // EI08
            Unlink(_imports, op.fd, import);
        }
        ReleaseImport(import);
        return 0;
    }

    /// <summary>Ends access to every ref without a page (gnttab_end_foreign_access(ref, NULL)): a ref the peer
    /// still maps is deferred and the deferral takes a reference on the page named by its entry (EI09,
    /// EI10) - for an export of this kernel, a page of the export's gntdev map, whose unmap then waits
    /// for it (D02). Then unmaps, detaches and puts the buffer.</summary>
    private void ReleaseImport(Import import)
    {
        foreach (uint r in import.Refs) Kernel.Grants.EndAccess(r, page: null);
        import.Mapping.Dispose();
    }

    /// <summary>EI11: closing the gntdev file releases every import.</summary>
    public void ReleaseAllImports()
    {
        var all = new List<Import>();
        lock (_lock)
        {
            foreach (var head in _imports.Values) for (var e = head; e is not null; e = e.Older) all.Add(e);
            _imports.Clear();
        }
        foreach (var i in all) ReleaseImport(i);
    }
}
