using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// The gntalloc driver of one kernel (<c>/dev/xen/gntalloc</c>, the sharing side, GA01-GA03): allocates
/// zeroed pages, grants them to a domain, maps them into the caller, and ends access - deferred while the
/// peer still maps - when both the caller's mapping and its gref are gone.
/// </summary>
/// <remarks>Lock: <c>_lock</c> (Linux's global gref_mutex) guards every file's gref list, the users
/// counts and the global gref count. Order: process locks &lt; this lock &lt; kernel grant refs &lt;
/// hypervisor. Events are sent after releasing it.</remarks>
internal sealed class GntAllocDriver
{
    /// <summary>The device path.</summary>
    public const string Path = "/dev/xen/gntalloc";

    private readonly object _lock = new();
    private readonly GuestKernel _kernel;
    private int _grefCount;
    private int _openFiles;

    public GntAllocDriver(GuestKernel kernel)
    {
        _kernel = kernel;
        kernel.RegisterDevice(Path, (_, _) =>
        {
            Interlocked.Increment(ref _openFiles);
            return new GntAllocFile(this);
        });
        kernel.RegisterLeakCheck(CheckLeaks);
    }

    private IEnumerable<string> CheckLeaks()
    {
        var list = new List<string>();
        lock (_lock) if (_grefCount != 0) list.Add($"{_kernel.Domain}: {_grefCount} gntalloc gref(s) alive");
        int open = Volatile.Read(ref _openFiles);
        if (open != 0) list.Add($"{_kernel.Domain}: {open} gntalloc file(s) open");
        return list;
    }

    private sealed class Gref
    {
        public uint Ref;
        public GuestFrame Page;
        public long FileIndex;
        public int Users = 1;
        public uint NotifyAction;
        public int NotifyOffset;
        public uint NotifyPort;
    }

    private sealed class GntAllocFile(GntAllocDriver driver) : KernelFile, IVmaOwner
    {
        private readonly List<Gref> _grefs = new();   // sorted by FileIndex
        private long _nextIndex;

        public override int Ioctl(GuestProcess caller, uint request, Span<byte> arg)
        {
            if (request == GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF) return driver.Alloc(this, arg);
            if (request == GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF) return driver.Dealloc(this, arg);
            if (request == GntAllocIoctl.IOCTL_GNTALLOC_SET_UNMAP_NOTIFY) return driver.SetNotify(this, arg);
            return -Errno.ENOTTY;
        }

        public override int Mmap(GuestProcess caller, Vma vma) => driver.Mmap(this, vma);

        void IVmaOwner.Close(Vma vma) => driver.CloseVma((List<Gref>)vma.Tag!);

        protected override void Release() => driver.ReleaseFile(this);

        public List<Gref> Grefs => _grefs;

        public long NextIndex { get => _nextIndex; set => _nextIndex = value; }
    }

    /// <summary>find_grefs: the first of <paramref name="count"/> contiguous grefs at
    /// <paramref name="index"/>, or -1. Count 0 never matches (Linux decrements it past zero).</summary>
    private static int FindRun(GntAllocFile file, long index, int count)
    {
        if (count <= 0) return -1;
        for (int i = 0; i < file.Grefs.Count; i++)
        {
            if (file.Grefs[i].FileIndex != index) continue;
            // Reliability fix (R7, found by the fuzz campaign): written as a subtraction, since i + count overflows
            // for a count near int.MaxValue and then let the loop below index past the list.
            if (count > file.Grefs.Count - i) return -1;
            for (int k = 1; k < count; k++)
                if (file.Grefs[i + k].FileIndex != index + (long)k * XenPage.Size) return -1;
            return i;
        }
        return -1;
    }

    private int Alloc(GntAllocFile file, Span<byte> arg)
    {
        int idsAt = GntAllocIoctl.GrefIdsOffset;
        // sizeof(op) is 24 (gref_ids[1] plus padding); a shorter argument is EFAULT (reliability fix:
        // a 16..23-byte argument used to make AsRef throw out of the ioctl).
        if (arg.Length < Unsafe.SizeOf<ioctl_gntalloc_alloc_gref>()) return -Errno.EFAULT;
        ref var op = ref MemoryMarshal.AsRef<ioctl_gntalloc_alloc_gref>(arg);
        if ((long)idsAt + 4L * op.count > arg.Length) return -Errno.EFAULT;
        int count = (int)op.count;
        var ids = MemoryMarshal.Cast<byte, uint>(arg.Slice(idsAt, 4 * count));
        lock (_lock)
        {
            if ((long)_grefCount + count > _kernel.Options.GntAllocLimit) return -Errno.ENOSPC;   // GA01
            var pages = new GuestFrame[count];
            if (!_kernel.TryAllocPages(pages, zero: true)) return -Errno.ENOMEM;
            int rc = _kernel.Grants.Allocate(ids);
            if (rc < 0)
            {
                foreach (var g in pages) _kernel.FreePage(g);
                return rc;
            }
            bool readOnly = (op.flags & GntAllocIoctl.GNTALLOC_FLAG_WRITABLE) == 0;
            long index = file.NextIndex;
            for (int i = 0; i < count; i++)
            {
                _kernel.Grants.Grant(ids[i], new DomainId(op.domid), pages[i], readOnly);
                file.Grefs.Add(new Gref { Ref = ids[i], Page = pages[i], FileIndex = index + (long)i * XenPage.Size });
            }
            file.NextIndex = index + (long)count * XenPage.Size;
            _grefCount += count;
            op.index = (ulong)index;
            return 0;
        }
    }

    private int Dealloc(GntAllocFile file, Span<byte> arg)
    {
        if (arg.Length < Unsafe.SizeOf<ioctl_gntalloc_dealloc_gref>()) return -Errno.EFAULT;
        var op = MemoryMarshal.Read<ioctl_gntalloc_dealloc_gref>(arg);
        var dead = new List<Gref>();
        lock (_lock)
        {
            int at = op.index <= long.MaxValue && op.count <= int.MaxValue ? FindRun(file, (long)op.index, (int)op.count) : -1;
            if (at < 0) return -Errno.EINVAL;                                                 // GA02
            for (int k = 0; k < (int)op.count; k++)
            {
                var g = file.Grefs[at + k];
                if (--g.Users == 0) dead.Add(g);
            }
            file.Grefs.RemoveRange(at, (int)op.count);
        }
        foreach (var g in dead) DelGref(g);
        return 0;
    }

    private int SetNotify(GntAllocFile file, Span<byte> arg)
    {
        if (arg.Length < Unsafe.SizeOf<ioctl_gntalloc_unmap_notify>()) return -Errno.EFAULT;
        var op = MemoryMarshal.Read<ioctl_gntalloc_unmap_notify>(arg);
        lock (_lock)
        {
            Gref? found = null;
            long page = (long)(op.index & ~(ulong)XenPage.Mask);
            foreach (var g in file.Grefs) if (g.FileIndex == page) { found = g; break; }
            if (found is null) return -Errno.ENOENT;                                          // GA03
            const uint valid = GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE | GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT;
            if ((op.action & ~valid) != 0) return -Errno.EINVAL;
            if ((op.action & GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT) != 0 && !_kernel.IsUserPort(op.event_channel_port)) return -Errno.EINVAL;
            found.NotifyAction = op.action;
            found.NotifyPort = op.event_channel_port;
            found.NotifyOffset = (int)(op.index & XenPage.Mask);
            return 0;
        }
    }

    private int Mmap(GntAllocFile file, Vma vma)
    {
        if ((vma.Flags & Posix.MAP_SHARED) == 0) return -Errno.EINVAL;                       // GA03
        lock (_lock)
        {
            int at = FindRun(file, vma.Offset, vma.PageCount);
            if (at < 0) return -Errno.ENOENT;
            var run = file.Grefs.GetRange(at, vma.PageCount);
            var pages = new GuestFrame[run.Count];
            for (int i = 0; i < run.Count; i++) { run[i].Users++; pages[i] = run[i].Page; }
            vma.Pages = pages;
            vma.Tag = run;
            vma.Owner = file;
            return 0;
        }
    }

    private void CloseVma(List<Gref> run)
    {
        var dead = new List<Gref>();
        lock (_lock)
            foreach (var g in run) if (--g.Users == 0) dead.Add(g);
        foreach (var g in dead) DelGref(g);
    }

    private void ReleaseFile(GntAllocFile file)
    {
        var dead = new List<Gref>();
        lock (_lock)
        {
            foreach (var g in file.Grefs) if (--g.Users == 0) dead.Add(g);
            file.Grefs.Clear();
        }
        foreach (var g in dead) DelGref(g);
        Interlocked.Decrement(ref _openFiles);
    }

    /// <summary>The gref has no users left: notify, then end access with the page handed over - deferred,
    /// the deferred entry holding the page, while the peer maps it - so the page is freed only once access
    /// has ended (GA02).</summary>
    private void DelGref(Gref g)
    {
        if ((g.NotifyAction & GntDevIoctl.UNMAP_NOTIFY_CLEAR_BYTE) != 0) _kernel.FrameSpan(g.Page)[g.NotifyOffset] = 0;
        if ((g.NotifyAction & GntDevIoctl.UNMAP_NOTIFY_SEND_EVENT) != 0) _kernel.Host.EventChannels.Send(_kernel.Domain, g.NotifyPort);
        _kernel.Grants.EndAccess(g.Ref, g.Page);
        lock (_lock) _grefCount--;
    }
}
