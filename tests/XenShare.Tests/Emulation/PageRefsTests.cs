using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>
/// The guest page reference model (struct page's _refcount) that decides when a page goes back to its
/// allocator, and the page-idle wait gntdev's asynchronous unmap is built on (D02, EI09, GA02).
/// </summary>
public sealed class PageRefsTests(Xunit.Abstractions.ITestOutputHelper output) : EmulatorTest
{
    private GuestKernel K => Dom0.Kernel;

    private GuestFrame[] Alloc(int n)
    {
        var pages = new GuestFrame[n];
        Assert.True(K.TryAllocPages(pages, zero: false));
        return pages;
    }

    private sealed class Waiter : IPageIdleWaiter
    {
        public int Calls;
        public int Thread;
        public void OnPagesIdle()
        {
            Interlocked.Increment(ref Calls);
            Thread = Environment.CurrentManagedThreadId;
        }
    }

    [Fact]
    public void GetPutFree_APageReturnsToItsAllocatorAtItsLastReference()
    {
        var p = Alloc(1)[0];
        int free = K.Ram.FreeCount;
        Assert.Equal(1, K.Pages.CountOf(p));
        K.GetPage(p);
        K.FreePage(p);                       // the owner frees it while referenced ...
        Assert.Equal(free, K.Ram.FreeCount);  // ... it stays out of the allocator
        Assert.Equal(1, K.Pages.CountOf(p));
        K.PutPage(p);                        // the last reference
        Assert.Equal(free + 1, K.Ram.FreeCount);
        Assert.Equal(0, K.Pages.CountOf(p));
        Assert.Throws<InvalidOperationException>(() => K.PutPage(p));   // a put without a reference
        Assert.Equal(0, K.Pages.CountOf(p));
    }

    [Fact]
    public void UnpopulatedPages_AreCountedAndReturnedToTheirOwnAllocator()
    {
        var pages = new GuestFrame[3];
        int free = K.Unpopulated.FreeCount;
        Assert.True(K.TryAllocUnpopulated(pages));
        Assert.All(pages, p => Assert.Equal(1, K.Pages.CountOf(p)));
        K.GetPage(pages[1]);
        foreach (var p in pages) K.FreePage(p);
        Assert.Equal(free - 1, K.Unpopulated.FreeCount);
        K.PutPage(pages[1]);
        Assert.Equal(free, K.Unpopulated.FreeCount);
    }

    [Fact]
    public void WhenIdle_AlreadyIdle_ReturnsTrueWithoutRegistering()
    {
        var pages = Alloc(2);
        var w = new Waiter();
        Assert.True(K.Pages.WhenIdle(pages, w));
        Assert.Equal(0, K.Pages.WatchedPages);
        Assert.Equal(0, w.Calls);
        foreach (var p in pages) K.FreePage(p);
    }

    [Fact]
    public void WhenIdle_RunsOnce_FromThePutThatDropsTheLastExtraReference()
    {
        var pages = Alloc(3);
        K.GetPage(pages[0]);
        K.GetPage(pages[2]);
        K.GetPage(pages[2]);
        var w = new Waiter();
        Assert.False(K.Pages.WhenIdle(pages, w));
        Assert.Equal(2, K.Pages.WatchedPages);
        Assert.Equal(2, K.PagesAwaitingUnmap);
        K.PutPage(pages[2]);
        K.PutPage(pages[0]);
        Assert.Equal(0, w.Calls);            // pages[2] still has an extra reference
        K.GetPage(pages[0]);                 // a page that became idle may be referenced again: no matter
        K.PutPage(pages[0]);
        Assert.Equal(0, w.Calls);
        int putterId = 0;
        var putter = new Thread(() => { putterId = Environment.CurrentManagedThreadId; K.PutPage(pages[2]); });
        putter.Start();
        Assert.True(putter.Join(TimeSpan.FromSeconds(30)));
        Assert.Equal(1, w.Calls);
        Assert.Equal(putterId, w.Thread);   // no thread of its own: the putter ran it
        Assert.Equal(0, K.Pages.WatchedPages);
        foreach (var p in pages) K.FreePage(p);
    }

    [Fact]
    public void Race_WhenIdleAgainstTheLastPut_NeverLostNeverTwice()
    {
        var page = Alloc(1);
        int iterations = Reliability.Stress.Long ? 200_000 : 20_000;
        using var go = new Barrier(2);
        using var done = new Barrier(2);
        var spins = new Random(42);
        var putterSpins = new int[iterations];
        var waiterSpins = new int[iterations];
        for (int i = 0; i < iterations; i++) { putterSpins[i] = spins.Next(0, 64); waiterSpins[i] = spins.Next(0, 64); }
        var putter = new Thread(() =>
        {
            for (int i = 0; i < iterations; i++)
            {
                go.SignalAndWait();
                Thread.SpinWait(putterSpins[i]);   // either side may come first
                K.PutPage(page[0]);
                done.SignalAndWait();
            }
        });
        putter.Start();
        int atOnce = 0;
        for (int i = 0; i < iterations; i++)
        {
            K.GetPage(page[0]);
            var w = new Waiter();
            go.SignalAndWait();
            Thread.SpinWait(waiterSpins[i]);
            bool idleAtOnce = K.Pages.WhenIdle(page, w);
            done.SignalAndWait();
            int calls = Volatile.Read(ref w.Calls);
            Assert.True(idleAtOnce ? calls == 0 : calls == 1, $"iteration {i}: idle at once {idleAtOnce}, waiter ran {calls} time(s)");
            Assert.Equal(0, K.Pages.WatchedPages);
            if (idleAtOnce) atOnce++;
        }
        Assert.True(putter.Join(TimeSpan.FromSeconds(60)));
        K.FreePage(page[0]);
        // Which side came first is up to the scheduler (both orders are also tested on their own above).
        output.WriteLine($"{iterations} rounds: idle at once {atOnce}, waiter run by the put {iterations - atOnce}");
    }

    [Fact]
    public void DmaBlockWithoutCma_TailPagesHaveCountZero_AndGoBackWithTheBlock()
    {
        using var host = new EmulatedHost(65536, dom0Kernel: new KernelOptions { DmaWithoutCma = true });
        var k = host.Dom0.Kernel;
        int free = k.Ram.FreeCount;
        Assert.True(k.TryAllocContiguous(4, block: true, out var first));
        var pages = Enumerable.Range(0, 4).Select(i => new GuestFrame(first.Value + (ulong)i)).ToArray();
        Assert.Equal([1, 0, 0, 0], pages.Select(k.Pages.CountOf));
        Assert.Equal([false, true, true, true], pages.Select(k.Pages.IsTail));
        k.GetPage(pages[2]);                                    // a reference on a tail page: reported
        var h = Assert.Single(host.Isolation.TakeAll());
        Assert.Equal(IsolationHazardKind.ReferenceOnFreePage, h.Kind);
        Assert.Equal(pages[2], h.Page);
        Assert.True(k.Pages.HasExtraReferences(pages[2]));     // and waited for: above its base of 0
        foreach (var p in pages) k.FreePage(p);                  // the block goes ...
        Assert.Equal(free - 1, k.Ram.FreeCount);                // ... but the referenced tail stays
        k.PutPage(pages[2]);
        Assert.Equal(free, k.Ram.FreeCount);
        Assert.Empty(host.CheckLeaks());
        Assert.Empty(host.CheckIsolation());

        // With CMA (the default) every page of a DMA block has its own reference.
        Assert.True(K.TryAllocContiguous(3, block: true, out var cma));
        for (ulong i = 0; i < 3; i++)
        {
            Assert.Equal(1, K.Pages.CountOf(new GuestFrame(cma.Value + i)));
            K.FreePage(new GuestFrame(cma.Value + i));
        }
    }
}
