using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Emulation;

/// <summary>
/// Release against the peer's unmap, across two domains, many rounds (EI09, D02, D06, GA02): dom0 closes
/// its export, releases the import the domU maps, ends its gntalloc grants and reuses memory, while the
/// domU reads its mapping and unmaps at the same moment. Whatever the interleaving, the domU reads only
/// the pattern, never dom0's reused memory; every deferred end and waiting unmap completes exactly once;
/// nothing leaks and the isolation monitor finds nothing.
/// </summary>
public sealed class ReleaseVsPeerUnmapRaceTests : DmaBufTest
{
    private const byte Secret = 0xEE;

    [Fact]
    public unsafe void Race_EI09_D02_ReleaseAndReuseVsPeerUnmap_PeerNeverReadsReusedMemory()
    {
        int rounds = Reliability.Stress.Long ? 5000 : 300;
        var rng = new Random(1234);
        using var go = new Barrier(2);
        int gdu = Open(PU, GntDev);
        for (int round = 0; round < rounds; round++)
        {
            uint flags = (uint)(round % 3) switch { 0 => 0u, 1 => GntDevIoctl.GNTDEV_DMA_FLAG_WC, _ => GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT };
            byte pattern = (byte)(round % 200 + 1);
            // dom0: two pages granted to itself, exported, imported for the domU, which maps them.
            int ga = Open(P0, GntAlloc);
            var (index, gaRefs) = AllocGrefs(P0, ga, Dom0.Id, 2);
            long gaVa = P0.Mmap(ga, (long)index, 2 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
            Assert.True(gaVa > 0);
            new Span<byte>((void*)gaVa, 2 * 4096).Fill(pattern);
            int gd = Open(P0, GntDev);
            Assert.Equal(0, Export(P0, gd, flags, Dom0.Id.Value, gaRefs, out int exportFd));
            Assert.Equal(0, Import(P0, gd, exportFd, 2, DomU.Id.Value, out var impRefs));
            ulong uIndex = MapGrantRefs(PU, gdu, Dom0.Id, impRefs);
            long uVa = PU.Mmap(gdu, (long)uIndex, 2 * 4096, Posix.PROT_READ, Posix.MAP_SHARED);
            Assert.True(uVa > 0);
            Assert.Equal(0, UnmapGrantRef(PU, gdu, uIndex, 2));   // the grants stay until the munmap
            int spinA = rng.Next(0, 400), spinB = rng.Next(0, 400);
            string? badRead = null;

            var dom0Side = new Thread(() =>
            {
                go.SignalAndWait();
                Thread.SpinWait(spinA);
                P0.Close(exportFd);
                ImpRelease(P0, gd, exportFd);
                P0.Munmap(gaVa, 2 * 4096);
                P0.Close(ga);
                P0.Close(gd);
                long reuse = P0.Mmap(-1, 0, 64 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
                if (reuse > 0)
                {
                    new Span<byte>((void*)reuse, 64 * 4096).Fill(Secret);
                    P0.Munmap(reuse, 64 * 4096);
                }
            });
            dom0Side.Start();
            go.SignalAndWait();
            Thread.SpinWait(spinB);
            for (int k = 0; k < 50 && badRead is null; k++)
            {
                byte a = *(byte*)uVa, b = *(byte*)(uVa + 4096 + 4095);
                if (a != pattern || b != pattern) badRead = $"round {round} (flags {flags}): the domU read {a}/{b}, pattern {pattern}";
            }
            Assert.Equal(0, PU.Munmap(uVa, 2 * 4096));
            Assert.True(dom0Side.Join(TimeSpan.FromSeconds(60)), $"round {round}: dom0's side hangs");
            Assert.True(badRead is null, badRead);
            Assert.Equal(0, Dom0.Kernel.DeferredReclaims);
            Assert.Equal(0, Dom0.Kernel.PagesAwaitingUnmap);
            Assert.All(impRefs.Concat(gaRefs), r => Assert.Equal(0, Entry(Dom0, r).Flags));
            Assert.Empty(Host.CheckIsolation());
        }
        Assert.Equal(0, PU.Close(gdu));
        AssertNoLeaks();
        Assert.Empty(HypervisorInvariants.Check(Xen));
    }
}
