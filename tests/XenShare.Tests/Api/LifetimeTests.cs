using System.Runtime.CompilerServices;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Tests.Emulation;

namespace XenShare.Tests.Api;

/// <summary>Issue 13 item 1 on the emulator: forgotten typed-API objects are released by finalizers and leave the
/// host's after-test checks clean; use after dispose throws; pins and calls in flight defer the release. The same
/// promises run on real Xen as conformance scenarios LT01-LT03.</summary>
public sealed class LifetimeTests : EmulatorTest
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    /// <summary>Runs finalizers until <paramref name="done"/> holds (bounded: a handle that is still reachable
    /// fails the test instead of hanging it).</summary>
    private static bool CollectUntil(Func<bool> done)
    {
        for (int i = 0; i < 50 && !done(); i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        return done();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ForgetEverything()
    {
        var sharer = GrantSharer.Open(PU);
        var pages = sharer.Share(Dom0.Id, 2);
        pages.Memory.Span[0] = 1;
        var gnt = GrantDevice.Open(P0);
        var map = gnt.Map(DomU.Id, pages.Refs);
        Assert.Equal(1, map.ReadOnlyMemory.Span[0]);
        var export = gnt.ExportDmaBuf(DomU.Id, pages.Refs);
        Assert.True(export.IsOpen);
        _ = ProcessBuffer.Allocate(P0, 8192);
        var evU = EventChannels.Open(PU);
        var ev0 = EventChannels.Open(P0);
        ev0.BindInterdomain(DomU.Id, evU.BindUnbound(Dom0.Id));
        using var heap = DmaHeap.Open(P0);
        _ = heap.Allocate(2 * XenPage.Size);
    }

    [Fact]
    public void ForgottenHandles_AreReleasedByFinalizers_AndTheLeakCheckIsClean()
    {
        int fds0 = P0.OpenFdCount, fdsU = PU.OpenFdCount, maps0 = P0.MappingCount, mapsU = PU.MappingCount;
        ForgetEverything();
        Assert.True(P0.OpenFdCount > fds0 && P0.MappingCount > maps0, "the forgotten objects hold fds and mappings");
        bool released = CollectUntil(() => P0.OpenFdCount == fds0 && PU.OpenFdCount == fdsU && P0.MappingCount == maps0 && PU.MappingCount == mapsU);
        Assert.True(released, $"after collection: dom0 {P0.OpenFdCount} fds / {P0.MappingCount} mappings, domU {PU.OpenFdCount} / {PU.MappingCount}");
        AssertNoLeaks();
    }

    [Fact]
    public void UseAfterDispose_ThrowsObjectDisposed_AndNothingLeaks()
    {
        using var sharer = GrantSharer.Open(PU);
        var pages = sharer.Share(Dom0.Id, 1);
        var gnt = GrantDevice.Open(P0);
        var map = gnt.Map(DomU.Id, pages.Refs);
        var mem = map.Memory;
        var roMem = map.ReadOnlyMemory;
        map.Dispose();
        map.Dispose();   // idempotent
        Assert.Throws<ObjectDisposedException>(() => mem.Span[0]);
        Assert.Throws<ObjectDisposedException>(() => roMem.Span[0]);
        Assert.Throws<ObjectDisposedException>(() => mem.Pin());
        Assert.Throws<ObjectDisposedException>(() => map.Address);
        var shared = pages.Memory;
        pages.Dispose();
        Assert.Throws<ObjectDisposedException>(() => shared.Span[0] = 1);
        gnt.Dispose();
        Assert.Throws<ObjectDisposedException>(() => gnt.Fd);
        Assert.Throws<ObjectDisposedException>(() => gnt.Map(DomU.Id, [new GrantRef(8)]));
        Assert.Throws<ObjectDisposedException>(() => gnt.SetMaxGrants(1));
        sharer.Dispose();
        Assert.Throws<ObjectDisposedException>(() => sharer.Share(Dom0.Id, 1));
        Assert.Equal(0, P0.MappingCount);
        AssertNoLeaks();
    }

    [Fact]
    public void WaitAfterTheDeviceIsDisposed_SaysSo()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        var gnt = GrantDevice.Open(P0);
        var export = gnt.ExportDmaBuf(DomU.Id, pages.Refs);
        export.Close();
        gnt.Dispose();
        var e = Assert.Throws<ObjectDisposedException>(() => export.WaitForRelease(TimeSpan.Zero));
        Assert.Contains("wait for the release before disposing the device", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public unsafe void Pin_KeepsTheMappingUntilReleased()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        pages.Memory.Span[3] = 0x33;
        using var gnt = GrantDevice.Open(P0);
        int mappings = P0.MappingCount;
        var map = gnt.Map(DomU.Id, pages.Refs);
        var mem = map.Memory;
        var pin = mem.Pin();
        map.Dispose();
        Assert.True(map.IsDisposed);
        Assert.Equal(mappings + 1, P0.MappingCount);   // a user remains: still mapped
        Assert.Equal(0x33, ((byte*)pin.Pointer)[3]);
        pin.Dispose();
        Assert.Equal(mappings, P0.MappingCount);
        Assert.Throws<ObjectDisposedException>(() => mem.Pin());
    }

    [Fact]
    public void DisposingTheDevice_KeepsItsFdOpenUntilItsMappingsAreGone()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        int fds = P0.OpenFdCount;
        var gnt = GrantDevice.Open(P0);
        var map = gnt.Map(DomU.Id, pages.Refs);
        gnt.Dispose();
        Assert.Equal(fds + 1, P0.OpenFdCount);   // as a VMA keeps its file open in Linux
        map.Memory.Span[0] = 9;                  // the mapping still works
        Assert.Equal(9, pages.Memory.Span[0]);
        map.Dispose();
        Assert.Equal(fds, P0.OpenFdCount);
    }

    [Fact]
    public async Task PinVersusDispose_RaceManyTimes_NeverTouchesUnmappedMemory()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        using var gnt = GrantDevice.Open(P0);
        int mappings = P0.MappingCount;
        for (int i = 0; i < 300; i++)
        {
            var map = gnt.Map(DomU.Id, pages.Refs);
            var mem = map.Memory;
            using var go = new Barrier(2);
            var reader = Task.Factory.StartNew(() =>
            {
                go.SignalAndWait(Generous);
                int reads = 0;
                for (int k = 0; k < 50; k++)
                {
                    try
                    {
                        using var pin = mem.Pin();
                        reads += ReadThroughPin(pin);
                    }
                    catch (ObjectDisposedException)
                    {
                        break;
                    }
                }
                return reads;
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            go.SignalAndWait(Generous);
            map.Dispose();
            await reader.WaitAsync(Generous);
            Assert.Equal(mappings, P0.MappingCount);
        }

        static unsafe int ReadThroughPin(System.Buffers.MemoryHandle pin) => ((byte*)pin.Pointer)[4095] >= 0 ? 1 : 0;
    }

    [Fact]
    public async Task CloseVersusIoctl_RaceManyTimes_EndsInObjectDisposedOrSuccess()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        for (int i = 0; i < 200; i++)
        {
            var gnt = GrantDevice.Open(P0);
            using var go = new Barrier(2);
            var mapper = Task.Factory.StartNew(() =>
            {
                go.SignalAndWait(Generous);
                try
                {
                    using var map = gnt.Map(DomU.Id, pages.Refs);
                    return 1;
                }
                catch (ObjectDisposedException)
                {
                    return 0;
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            go.SignalAndWait(Generous);
            gnt.Dispose();
            await mapper.WaitAsync(Generous);
        }
        Assert.Equal(0, P0.MappingCount);
    }

    [Fact]
    public async Task EventChannels_WaitPendingAsync_GetsTheEvent_TimesOut_AndCancels()
    {
        using var evU = EventChannels.Open(PU);
        using var ev0 = EventChannels.Open(P0);
        EventPort portU = evU.BindUnbound(Dom0.Id);
        EventPort port0 = ev0.BindInterdomain(DomU.Id, portU);

        Assert.Null(await evU.WaitPendingAsync(TimeSpan.FromMilliseconds(20)));
        var waiting = evU.WaitPendingAsync(Timeout.InfiniteTimeSpan);
        ev0.Notify(port0);
        Assert.Equal(portU, await waiting.WaitAsync(Generous));
        evU.Unmask(portU);

        using var cts = new CancellationTokenSource();
        var cancelled = evU.WaitPendingAsync(Timeout.InfiniteTimeSpan, cts.Token);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled.WaitAsync(Generous));
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = evU.WaitPendingAsync(TimeSpan.FromMilliseconds(-5)); });
    }

    [Fact]
    public async Task EventChannels_DisposedDuringAnAsyncWait_FaultsItWithObjectDisposed()
    {
        var ev = EventChannels.Open(PU);
        ev.BindUnbound(Dom0.Id);
        var waiting = ev.WaitPendingAsync(Timeout.InfiniteTimeSpan);
        ev.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(Generous));
        Assert.True(PU.WaitIdle(Generous));   // the last slice's poll has returned and the fd is closed
    }

    [Fact]
    public void XenShareException_IsAnIOException_WithErrnoAndOperation()
    {
        using var gnt = GrantDevice.Open(P0);
        var e = Assert.Throws<XenShareException>(() => gnt.ExportDmaBuf(new DomainId(0x7fe0), [new GrantRef(8)]));
        IOException io = e;
        Assert.Equal(Errno.EINVAL, e.Errno);   // RX07: an unknown domain
        Assert.Equal("IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS", e.Operation);
        Assert.Contains(Errno.Name(e.Errno), io.Message, StringComparison.Ordinal);
        Assert.Equal(0, P0.MappingCount);   // the after-test check also finds nothing left
    }

    [Fact]
    public void GrantRefs_AreViewsWithoutCopies()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 3);
        ReadOnlySpan<GrantRef> a = pages.Refs;
        ReadOnlySpan<GrantRef> b = pages.Refs.Span;
        Assert.True(Unsafe.AreSame(ref Unsafe.AsRef(in a[0]), ref Unsafe.AsRef(in b[0])));
        Assert.Equal(3, pages.Refs.Count);
        Assert.Equal(pages.Refs[2], pages.Refs.Memory.Span[2]);
        Assert.Equal(3, pages.Refs.Count(r => r.Value >= 8));
    }
}
