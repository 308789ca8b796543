using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Conformance;

/// <summary>Pages the peer grants to the domain under test through gntalloc, mapped in the peer process
/// (so the scenario can write and check their contents).</summary>
public sealed class PeerGrants : IDisposable
{
    private readonly IGuestProcess _p;
    private long _address;
    private bool _deallocated;

    public PeerGrants(ConformanceContext c, int count, bool writable = true)
    {
        _p = c.PeerProcess;
        Fd = Raw.Open(_p, "/dev/xen/gntalloc");
        int rc = Raw.Alloc(_p, Fd, c.Self, count, writable, out ulong index, out uint[] refs);
        if (rc != 0)
        {
            _p.Close(Fd);
            throw new ConformanceException("peer ALLOC_GREF: " + Check.Describe(rc));
        }
        Index = index;
        Refs = refs;
        Count = count;
        _address = _p.Mmap(Fd, (long)index, count * Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        if (_address < 0)
        {
            long e = _address;
            _address = 0;
            Dispose();
            throw new ConformanceException("peer mmap(gntalloc): " + Check.Describe(e));
        }
    }

    public int Fd { get; }
    public ulong Index { get; }
    public uint[] Refs { get; }
    public int Count { get; }
    public Span<byte> Memory => Raw.Mem(_address, Count * Raw.Page);

    /// <summary>DEALLOC_GREF now (the pages live on while mapped here or by the peer).</summary>
    public void Deallocate()
    {
        if (_deallocated) return;
        _deallocated = true;
        Check.Ok(Raw.Dealloc(_p, Fd, Index, (uint)Count), "peer DEALLOC_GREF", anyNonNegative: false);
    }

    /// <summary>munmap of the peer's own mapping.</summary>
    public void Unmap()
    {
        long a = Interlocked.Exchange(ref _address, 0);
        if (a != 0) Check.Ok(_p.Munmap(a, Count * Raw.Page), "peer munmap");
    }

    public void Dispose()
    {
        long a = Interlocked.Exchange(ref _address, 0);
        if (a != 0) _p.Munmap(a, Count * Raw.Page);
        if (!_deallocated)
        {
            _deallocated = true;
            Raw.Dealloc(_p, Fd, Index, (uint)Count);
        }
        _p.Close(Fd);
    }
}

/// <summary>A local dma-buf of the process under test, from <see cref="ConformanceContext.DmaBufSource"/>.</summary>
public sealed class LocalDmaBuf : IDisposable
{
    private readonly IGuestProcess _p;
    private readonly int _gntalloc = -1;
    private readonly int _gntdev = -1;
    private readonly ulong _allocIndex;
    private long _address;
    private int _fd;

    public LocalDmaBuf(ConformanceContext c, int pages)
    {
        _p = c.Process;
        Pages = pages;
        if (c.DmaBufSource == LocalDmaBufSource.DmaHeap)
        {
            int heap = _p.Open("/dev/dma_heap/system", Posix.O_RDWR | Posix.O_CLOEXEC);
            if (heap < 0) throw new ConformanceException("open /dev/dma_heap/system: " + Check.Describe(heap));
            var arg = Raw.Bytes(new dma_heap_allocation_data { len = (ulong)pages * Raw.Page, fd_flags = (uint)(Posix.O_RDWR | Posix.O_CLOEXEC) });
            int rc = _p.Ioctl(heap, DmaHeapIoctl.DMA_HEAP_IOCTL_ALLOC, arg);
            _p.Close(heap);
            if (rc < 0) throw new ConformanceException("DMA_HEAP_IOCTL_ALLOC: " + Check.Describe(rc));
            _fd = (int)MemoryMarshal.Read<dma_heap_allocation_data>(arg).fd;
            _address = _p.Mmap(_fd, 0, pages * Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
            if (_address < 0)
            {
                long e = _address;
                _address = 0;
                Dispose();
                throw new ConformanceException("mmap(heap dma-buf): " + Check.Describe(e));
            }
        }
        else
        {
            // This domain grants its own pages to itself, maps them back through gntdev and exports them.
            _gntalloc = Raw.Open(_p, "/dev/xen/gntalloc");
            _gntdev = Raw.Open(_p, "/dev/xen/gntdev");
            int rc = Raw.Alloc(_p, _gntalloc, c.Self, pages, true, out _allocIndex, out uint[] refs);
            if (rc != 0) { Dispose(); throw new ConformanceException("self ALLOC_GREF: " + Check.Describe(rc)); }
            _address = _p.Mmap(_gntalloc, (long)_allocIndex, pages * Raw.Page, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
            if (_address < 0) { _address = 0; Dispose(); throw new ConformanceException("self mmap(gntalloc) failed"); }
            rc = Raw.Export(_p, _gntdev, c.Self, refs, out int fd);
            if (rc != 0) { Dispose(); throw new ConformanceException("self EXP_FROM_REFS: " + Check.Describe(rc)); }
            _fd = fd;
        }
    }

    public int Fd => _fd;
    public int Pages { get; }

    /// <summary>The buffer's memory as the CPU sees it.</summary>
    public Span<byte> Memory => Raw.Mem(_address, Pages * Raw.Page);

    /// <summary>Closes the dma-buf fd now (the buffer stays while something else holds it).</summary>
    public void CloseFd()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Check.Ok(_p.Close(fd), "close(dma-buf)");
    }

    public void Dispose()
    {
        long a = Interlocked.Exchange(ref _address, 0);
        if (a != 0) _p.Munmap(a, Pages * Raw.Page);
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) _p.Close(fd);
        if (_gntalloc >= 0)
        {
            Raw.Dealloc(_p, _gntalloc, _allocIndex, (uint)Pages);
            _p.Close(_gntalloc);
        }
        if (_gntdev >= 0) _p.Close(_gntdev);
    }
}
