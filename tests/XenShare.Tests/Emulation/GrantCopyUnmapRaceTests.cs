using System.Runtime.InteropServices;
using XenShare.Abi;

namespace XenShare.Tests.Emulation;

/// <summary>GD07 under a race: one thread issues GRANT_COPY with its segment array and local buffer in
/// an anonymous mapping while another thread unmaps that mapping. The copy reads the array with
/// copy-in/copy-out under the mapping lock and pins the local page, so the outcome is 0 or EFAULT, never
/// a fault of the host process, a write into a freed page, or a leak.</summary>
public sealed class GrantCopyUnmapRaceTests : EmulatorTest
{
    private static int Iterations => Environment.GetEnvironmentVariable("XENSHARE_STRESS") == "1" ? 50_000 : 2_000;

    [Fact]
    public async Task GD07_CopyRacingMunmapOfItsSegmentsAndBuffer_IsOkOrEfault()
    {
        int ga = Open(PU, "/dev/xen/gntalloc");
        var (index, refs) = AllocGrefs(PU, ga, Dom0.Id, 1);
        int gd = Open(P0, "/dev/xen/gntdev");
        long current = 0;
        int ok = 0, efault = 0;
        using var done = new CancellationTokenSource();
        var unmapper = Task.Run(() =>
        {
            while (!done.IsCancellationRequested)
            {
                long a = Interlocked.Exchange(ref current, 0);
                if (a != 0) P0.Munmap(a, 8192);
                else Thread.Yield();
            }
        });
        var arg = new byte[16];
        for (int i = 0; i < Iterations; i++)
        {
            long mem = P0.Mmap(-1, 0, 8192, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS);
            Assert.True(mem > 0);
            var seg = new gntdev_grant_copy_segment { len = 4096, flags = GntCopy.source_gref };
            seg.source.foreign = new gntdev_grant_copy_foreign { @ref = refs[0], domid = DomU.Id.Value };
            seg.dest.virt = (ulong)mem + 4096;
            MemoryMarshal.Write(GuestMemory.AsSpan(mem, 24), in seg);
            MemoryMarshal.Write(arg, new ioctl_gntdev_grant_copy { count = 1, segments = (ulong)mem });
            Volatile.Write(ref current, mem);                       // let the other thread unmap it any time now
            int rc = P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_GRANT_COPY, arg);
            Assert.True(rc == 0 || rc == -Errno.EFAULT, $"iteration {i}: {rc}");
            if (rc == 0) ok++; else efault++;
            long mine = Interlocked.Exchange(ref current, 0);
            if (mine != 0) Assert.Equal(0, P0.Munmap(mine, 8192));
        }
        await done.CancelAsync();
        await unmapper.WaitAsync(TimeSpan.FromMinutes(1));
        Assert.Equal(Iterations, ok + efault);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, PU.Ioctl(ga, GntAllocIoctl.IOCTL_GNTALLOC_DEALLOC_GREF, Bytes(new ioctl_gntalloc_dealloc_gref { index = index, count = 1 })));
        Assert.Equal(0, PU.Close(ga));
    }
}
