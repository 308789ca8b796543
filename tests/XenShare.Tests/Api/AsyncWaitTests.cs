using XenShare.Abi;
using XenShare.Api;
using XenShare.Tests.Emulation;

namespace XenShare.Tests.Api;

/// <summary>The async wait for release: on the emulator (IAsyncGuestProcess, no thread per wait) and on a
/// plain IGuestProcess (a wait thread), EW04 and EW06.</summary>
public sealed class AsyncWaitTests : EmulatorTest
{
    [Fact]
    public async Task EW04_ManyAsyncWaitersAreAllWokenByOneRelease()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        using var gnt = GrantDevice.Open(P0);
        var buf = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[0]]);
        using var cancelHalf = new CancellationTokenSource();
        var waits = new List<Task<bool>>();
        for (int i = 0; i < 400; i++)
            waits.Add(buf.WaitForReleaseAsync(TimeSpan.FromMinutes(5), i % 2 == 0 ? cancelHalf.Token : CancellationToken.None));
        cancelHalf.Cancel();                                   // EW06: half the callers stop waiting...
        for (int i = 0; i < waits.Count; i += 2)
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waits[i].WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Equal(4096, P0.Lseek(buf.Fd, 0, Posix.SEEK_END));   // ...and the buffer is untouched
        await buf.DisposeAsync();                              // the last reference: release
        for (int i = 1; i < waits.Count; i += 2)
            Assert.True(await waits[i].WaitAsync(TimeSpan.FromMinutes(1)));   // D01: every waiter woken
        Assert.Equal(Gtf.permit_access, Entry(DomU, pages.Refs[0].Value).Flags);   // D02: unmapped first
    }

    [Fact]
    public async Task EW03_AsyncWaitTimesOutAndZeroTimeoutIsImmediate()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        using var gnt = GrantDevice.Open(P0);
        await using var buf = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[0]]);
        Assert.False(await buf.WaitForReleaseAsync(TimeSpan.Zero).WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.False(await buf.WaitForReleaseAsync(TimeSpan.FromMilliseconds(20)).WaitAsync(TimeSpan.FromMinutes(1)));
    }

    [Fact]
    public async Task EW04_ThreadFallbackOnAPlainGuestProcess()
    {
        // CountingProcess implements only IGuestProcess: the typed API waits on a thread of its own.
        var plain = new CountingProcess(P0);
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 1);
        using var gnt = GrantDevice.Open(plain);
        var buf = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[0]]);
        var waiting = buf.WaitForReleaseAsync(TimeSpan.FromMinutes(5));
        await buf.DisposeAsync();
        Assert.True(await waiting.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.True(plain.Ioctls >= 2);   // export + the blocking wait went through Ioctl
    }

    /// <summary>.NET's infinite timeout is a wait until the release (blocking and async), not an argument error;
    /// other negative timeouts still are.</summary>
    [Fact]
    public async Task EW03_InfiniteTimeSpanWaitsUntilTheRelease()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, 2);
        using var gnt = GrantDevice.Open(P0);
        var a = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[0]]);
        var b = gnt.ExportDmaBuf(DomU.Id, [pages.Refs[1]]);
        var asyncWait = a.WaitForReleaseAsync(Timeout.InfiniteTimeSpan);
        var blockingWait = Task.Factory.StartNew(() => b.WaitForRelease(Timeout.InfiniteTimeSpan), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
        Assert.False(asyncWait.IsCompleted);
        Assert.Throws<ArgumentOutOfRangeException>(() => a.WaitForRelease(TimeSpan.FromMilliseconds(-2)));
        await a.DisposeAsync();
        await b.DisposeAsync();
        Assert.True(await asyncWait.WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.True(await blockingWait.WaitAsync(TimeSpan.FromMinutes(1)));
    }
}
