using System.Runtime.InteropServices;
using System.Text;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>
/// The cross-domain probe that found the isolation bug of IMP_RELEASE (a guest reading dom0's reused
/// memory), step by step as it was reported:
/// <list type="number">
/// <item>dom0 allocates 4 pages with gntalloc granted to itself, writes a pattern, maps them with gntdev,
/// exports them as a dma-buf (EXP_FROM_REFS with the given flags) and imports that dma-buf to refs for the
/// domU (IMP_TO_REFS);</item>
/// <item>the domU maps those refs with its gntdev and keeps the mapping;</item>
/// <item>dom0 closes the export fd and calls IMP_RELEASE (optionally with a waiter blocked in
/// EXP_WAIT_RELEASED), then munmaps, does UNMAP_GRANT_REF, and closes its gntdev and (unless kept open)
/// gntalloc files;</item>
/// <item>dom0 maps 1024 fresh anonymous pages and writes "DOM0-SECRET" into each;</item>
/// <item>the domU reads its still-mapped pages.</item>
/// </list>
/// Then the domU unmaps and dom0 lets go of the rest, so the host can be checked for leaks.
/// </summary>
internal sealed unsafe class ReusedMemoryProbe
{
    public const int Pages = 4;
    public const int SecretPages = 1024;
    private static readonly byte[] Secret = Encoding.ASCII.GetBytes("DOM0-SECRET");

    private readonly EmulatedGuest _dom0, _domU;
    private readonly GuestProcess _p0, _pu;

    public ReusedMemoryProbe(EmulatedGuest dom0, GuestProcess p0, EmulatedGuest domU, GuestProcess pu)
    {
        _dom0 = dom0;
        _p0 = p0;
        _domU = domU;
        _pu = pu;
    }

    /// <summary>What the domU saw, and the state of dom0 between dom0's teardown and the domU's unmap.</summary>
    public sealed record Result
    {
        public int PagesWithPattern { get; init; }
        public int PagesWithSecret { get; init; }
        public int WaitResult { get; init; } = int.MinValue;
        public ushort[] GntallocFlagsWhileDomUMaps { get; init; } = [];
        public int PagesAwaitingUnmap { get; init; }
        public int DeferredReclaims { get; init; }
        public uint[] ImportRefs { get; init; } = [];
        public uint[] GntallocRefs { get; init; } = [];
    }

    private static byte[] Pattern(int page) => Encoding.ASCII.GetBytes($"PATTERN-{page:D2}-OLD-CONTENT");

    private static Span<byte> Mem(long va, int bytes) => new((void*)va, bytes);

    /// <summary>Runs the probe; every step asserts its return code. <paramref name="wait"/>: a waiter is
    /// blocked in EXP_WAIT_RELEASED when IMP_RELEASE drops the export's last reference.</summary>
    public Result Run(uint flags, bool wait, bool keepGntallocOpen)
    {
        const int Bytes = Pages * 4096;
        // 1. dom0: gntalloc pages granted to itself, a pattern, a gntdev mapping, an export, an import for the domU.
        int ga = Ok(_p0.Open("/dev/xen/gntalloc", Posix.O_RDWR), "open gntalloc");
        var alloc = EmulatorTest.AllocGrefArg(_dom0.Id, Pages, writable: true);
        Ok(_p0.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, alloc), "ALLOC_GREF");
        ulong gaIndex = MemoryMarshal.Read<ulong>(alloc.AsSpan(8));
        uint[] gaRefs = MemoryMarshal.Cast<byte, uint>(alloc.AsSpan(GntAllocIoctl.GrefIdsOffset, 4 * Pages)).ToArray();
        long gaVa = Ok(_p0.Mmap(ga, (long)gaIndex, Bytes, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "mmap gntalloc");
        for (int i = 0; i < Pages; i++) Pattern(i).CopyTo(Mem(gaVa + i * 4096L, 4096));

        int gd = Ok(_p0.Open("/dev/xen/gntdev", Posix.O_RDWR), "open gntdev");
        ulong mapIndex = EmulatorTest.MapGrantRefs(_p0, gd, _dom0.Id, gaRefs);
        long gdVa = Ok(_p0.Mmap(gd, (long)mapIndex, Bytes, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "mmap gntdev");
        for (int i = 0; i < Pages; i++)
            Assert.True(Mem(gdVa + i * 4096L, 4096).StartsWith(Pattern(i)), "dom0's gntdev mapping shows the pattern");
        Ok(DmaBufTest.Export(_p0, gd, flags, _dom0.Id.Value, gaRefs, out int exportFd), "EXP_FROM_REFS");
        Ok(DmaBufTest.Import(_p0, gd, exportFd, Pages, _domU.Id.Value, out var impRefs), "IMP_TO_REFS");

        // 2. the domU maps the imported refs and keeps the mapping.
        int gdu = Ok(_pu.Open("/dev/xen/gntdev", Posix.O_RDWR), "domU open gntdev");
        ulong uIndex = EmulatorTest.MapGrantRefs(_pu, gdu, _dom0.Id, impRefs);
        long uVa = Ok(_pu.Mmap(gdu, (long)uIndex, Bytes, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED), "domU mmap");
        for (int i = 0; i < Pages; i++)
            Assert.True(Mem(uVa + i * 4096L, 4096).StartsWith(Pattern(i)), "the domU's mapping shows the pattern");

        // 3. dom0 closes the export fd, releases the import (deferred: the domU maps it), tears down.
        Task<int>? waiter = null;
        Ok(_p0.Close(exportFd), "close export");
        if (wait)
        {
            int waiterThread = 0;
            waiter = Task.Factory.StartNew(() =>
            {
                waiterThread = Environment.CurrentManagedThreadId;
                return DmaBufTest.Wait(_p0, gd, exportFd, 60_000);
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            Assert.True(SpinWait.SpinUntil(() => waiterThread != 0 && _dom0.Kernel.IsInReleaseWait(waiterThread), TimeSpan.FromSeconds(30)), "the waiter never blocked");
        }
        Assert.Equal(0, DmaBufTest.ImpRelease(_p0, gd, exportFd));                 // EI09: 0 although mapped
        int waitResult = int.MinValue;
        if (waiter is not null)
        {
            Assert.True(waiter.Wait(TimeSpan.FromSeconds(30)), "EXP_WAIT_RELEASED did not return after the release");
            waitResult = waiter.Result;
        }
        Ok(_p0.Munmap(gdVa, Bytes), "munmap gntdev");
        Ok(EmulatorTest.UnmapGrantRef(_p0, gd, mapIndex, (uint)Pages), "UNMAP_GRANT_REF");
        Ok(_p0.Munmap(gaVa, Bytes), "munmap gntalloc");
        Ok(_p0.Close(gd), "close gntdev");
        if (!keepGntallocOpen) Ok(_p0.Close(ga), "close gntalloc");

        var gaFlags = gaRefs.Select(r => _dom0.Domain.GrantTable.ReadEntry(new GrantRef(r)).Flags).ToArray();
        int awaiting = _dom0.Kernel.PagesAwaitingUnmap, deferred = _dom0.Kernel.DeferredReclaims;

        // 4. dom0 reuses memory: 1024 fresh anonymous pages, each with the secret.
        long secretVa = Ok(_p0.Mmap(-1, 0, SecretPages * 4096L, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS), "mmap anonymous");
        for (int i = 0; i < SecretPages; i++) Secret.CopyTo(Mem(secretVa + i * 4096L, 4096));

        // 5. what the domU reads now.
        int withPattern = 0, withSecret = 0;
        for (int i = 0; i < Pages; i++)
        {
            var page = Mem(uVa + i * 4096L, 4096);
            if (page.StartsWith(Pattern(i))) withPattern++;
            if (page.StartsWith(Secret)) withSecret++;
        }

        // Then the domU unmaps, and dom0 lets go of the rest.
        Ok(_pu.Munmap(uVa, Bytes), "domU munmap");
        Ok(EmulatorTest.UnmapGrantRef(_pu, gdu, uIndex, (uint)Pages), "domU UNMAP_GRANT_REF");
        Ok(_pu.Close(gdu), "domU close gntdev");
        if (keepGntallocOpen) Ok(_p0.Close(ga), "close gntalloc");
        Ok(_p0.Munmap(secretVa, SecretPages * 4096L), "munmap anonymous");
        return new Result
        {
            PagesWithPattern = withPattern,
            PagesWithSecret = withSecret,
            WaitResult = waitResult,
            GntallocFlagsWhileDomUMaps = gaFlags,
            PagesAwaitingUnmap = awaiting,
            DeferredReclaims = deferred,
            ImportRefs = impRefs,
            GntallocRefs = gaRefs,
        };
    }

    private static int Ok(int rc, string what)
    {
        Assert.True(rc >= 0, $"{what}: {rc}");
        return rc;
    }

    private static long Ok(long rc, string what)
    {
        Assert.True(rc >= 0, $"{what}: {rc}");
        return rc;
    }
}
