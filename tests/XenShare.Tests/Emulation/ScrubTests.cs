using XenShare.Emulation.Hypervisor;

namespace XenShare.Tests.Emulation;

/// <summary>Isolation of freed memory: a machine frame is scrubbed before it reaches a different domain
/// (Xen scrubs freed pages); only a domain's own decrease/populate reservation cycle may get its own data
/// back unscrubbed.</summary>
public sealed class ScrubTests : EmulatorTest
{
    [Fact]
    public void FrameFreedByOneDomainReachesAnotherZeroed()
    {
        var mem = Xen.Memory;
        Assert.True(mem.TryAllocate(DomU.Id, 1001, out var f));
        mem.FrameSpan(f).Fill(0xA5);
        Assert.True(mem.Put(f));
        // The allocator hands the lowest free frame out again: the same one, to another owner.
        Assert.True(mem.TryAllocate(Dom0.Id, 1002, out var g));
        Assert.Equal(f, g);
        Assert.True(mem.FrameSpan(g).IndexOfAnyExcept((byte)0) < 0);
        mem.FrameSpan(g).Fill(0x5A);
        Assert.True(mem.Put(g));
        // An allocation for an unknown owner scrubs too.
        Assert.True(mem.TryAllocate(Dom0.Id, out var h));
        Assert.True(mem.FrameSpan(h).IndexOfAnyExcept((byte)0) < 0);
        Assert.True(mem.Put(h));
    }

    [Fact]
    public void DestroyedDomainsRamIsZeroForTheNextDomainWithTheSameId()
    {
        var victim = Host.CreateGuest(new DomainConfig { RamPages = 256 });
        var id = victim.Id;
        for (ulong gfn = 0; gfn < 256; gfn++) victim.Kernel.FrameSpan(new GuestFrame(gfn)).Fill(0xEE);
        Host.DestroyGuest(victim);
        var next = Host.CreateGuest(new DomainConfig { RamPages = 256, Id = id });
        for (ulong gfn = 0; gfn < 256; gfn++)
            Assert.True(next.Kernel.FrameSpan(new GuestFrame(gfn)).IndexOfAnyExcept((byte)0) < 0, $"gfn {gfn} kept data");
        Host.DestroyGuest(next);
    }
}
