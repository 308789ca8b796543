using XenShare.Abi;

namespace XenShare.Emulation.Kernel.Dma;

/// <summary>
/// A kernel's software IO TLB as Linux's Xen swiotlb uses it in a direct-mapped domain (DM04): a scatterlist
/// entry whose machine frames are not contiguous (or beyond a device's mask) is copied into a bounce buffer of
/// machine-contiguous memory at map time, and the device reads and writes that copy. One mapping spans at
/// most <see cref="SegmentLimitBytes"/> (IO_TLB_SEGSIZE = 128 slots of IO_TLB_SIZE = 2 KiB); a longer entry
/// cannot be bounced and the map fails (ENOMEM). Every byte copied is counted in <see cref="BytesCopied"/>.
/// </summary>
/// <remarks>Deviation: Linux reserves one pool (64 MiB by default) at boot and hands out 2 KiB slots; the
/// emulator takes each bounce buffer from machine memory when it is mapped (page-granular, owned by the
/// domain) and gives it back at unmap, with the pool's size as a cap. The limits and the copies are the
/// same. Lock: none of its own; counters are Interlocked.</remarks>
public sealed class Swiotlb
{
    /// <summary>The longest run one mapping can bounce: IO_TLB_SEGSIZE (128) x IO_TLB_SIZE (2 KiB).</summary>
    public const int SegmentLimitBytes = 128 * 2048;

    /// <summary>The pool's size (Linux's default swiotlb of 64 MiB).</summary>
    public const int PoolBytes = 64 << 20;

    private readonly GuestKernel _kernel;
    private long _pagesInUse;
    private long _bytesCopied;
    private long _bouncedEntries;
    private long _failedMaps;

    internal Swiotlb(GuestKernel kernel)
    {
        _kernel = kernel;
        kernel.RegisterLeakCheck(() => PagesInUse == 0 ? [] : [$"{kernel.Domain}: {PagesInUse} swiotlb bounce page(s) still mapped"]);
    }

    /// <summary>Bytes copied between buffers and bounce buffers (at map, sync and unmap).</summary>
    public long BytesCopied => Interlocked.Read(ref _bytesCopied);

    /// <summary>Scatterlist entries that were bounced.</summary>
    public long BouncedEntries => Interlocked.Read(ref _bouncedEntries);

    /// <summary>Maps that failed because an entry could not be bounced (longer than
    /// <see cref="SegmentLimitBytes"/>, or the pool was full).</summary>
    public long FailedMaps => Interlocked.Read(ref _failedMaps);

    /// <summary>Bounce pages in use.</summary>
    public long PagesInUse => Interlocked.Read(ref _pagesInUse);

    internal void CountFailure() => Interlocked.Increment(ref _failedMaps);

    /// <summary>Takes a machine-contiguous bounce buffer for <paramref name="entry"/>, or null when the entry
    /// is too long or the pool is full.</summary>
    internal BounceSlot? TryAllocate(SgEntry entry)
    {
        if ((long)entry.Pages * XenPage.Size > SegmentLimitBytes) return null;
        long after = Interlocked.Add(ref _pagesInUse, entry.Pages);
        if (after * XenPage.Size > PoolBytes || !_kernel.Host.Memory.TryAllocateContiguous(_kernel.Domain.Id, entry.Pages, out var first))
        {
            Interlocked.Add(ref _pagesInUse, -entry.Pages);
            return null;
        }
        Interlocked.Increment(ref _bouncedEntries);
        return new BounceSlot(entry, first, entry.Pages);
    }

    internal void Free(BounceSlot slot)
    {
        for (int i = 0; i < slot.Pages; i++) _kernel.Host.Memory.Put(new MachineFrame(slot.First.Value + (ulong)i));
        Interlocked.Add(ref _pagesInUse, -slot.Pages);
    }

    /// <summary>Copies the entry's pages into the bounce buffer (toDevice) or back (from the device).</summary>
    internal void Copy(BounceSlot slot, bool toDevice)
    {
        var memory = _kernel.Host.Memory;
        for (int i = 0; i < slot.Pages; i++)
        {
            var gfn = new GuestFrame(slot.Entry.First.Value + (ulong)i);
            if (!_kernel.TryResolve(gfn, out var mfn)) continue;   // the page went away: nothing to copy
            var bounce = memory.FrameSpan(new MachineFrame(slot.First.Value + (ulong)i));
            var page = memory.FrameSpan(mfn);
            if (toDevice) page.CopyTo(bounce);
            else bounce.CopyTo(page);
        }
        Interlocked.Add(ref _bytesCopied, (long)slot.Pages * XenPage.Size);
    }
}
