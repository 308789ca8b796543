using XenShare.Abi;
using XenShare.Emulation.Xenstore;
using XenShare.Tests.Emulation;
using XenShare.Xenstore;

namespace XenShare.Tests.Xenstore;

/// <summary>The typed client (<see cref="XenstoreClient"/>) against the emulated daemon itself, on both
/// transports: dom0's socket (as <c>xenshare xenstored</c> serves it) and a guest's
/// <c>/dev/xen/xenbus</c> through the seam (XS02-XS07 end to end).</summary>
public sealed class XenstoreClientEmulatorTests : EmulatorTest
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private string Home(EmulatedGuestId g) => "/local/domain/" + g.Value;

    private readonly record struct EmulatedGuestId(ushort Value);

    [Fact]
    public async Task XS07_XenbusFromAGuest_RelativePathsPermissionsAndAWatchOnItsHome()
    {
        await using var guest = XenstoreClient.OpenXenbus(PU);
        string home = Home(new EmulatedGuestId(DomU.Id.Value));
        Assert.Equal(home, await guest.GetDomainPathAsync(DomU.Id));
        await guest.WriteAsync("data/greeting", "hello");
        Assert.Equal("hello", Host.Xenstore.Read(home + "/data/greeting"));
        Assert.Equal("hello", await guest.ReadStringAsync(home + "/data/greeting"));
        Assert.Null(await guest.TryReadStringAsync("data/nothing"));
        var denied = await Assert.ThrowsAsync<XenstoreException>(() => guest.ReadStringAsync("/tool"));
        Assert.Equal(Errno.EACCES, denied.Errno);                       // the daemon's error string, as errno
        var perms = await guest.GetPermissionsAsync("data/greeting");
        Assert.Equal(new XenstorePermission(DomU.Id, XenstoreAccess.None), perms[0]);   // it owns what it made

        using var cts = new CancellationTokenSource(Patience);
        await using var events = guest.WatchAsync("data", "w", cts.Token).GetAsyncEnumerator(cts.Token);
        Assert.True(await events.MoveNextAsync());
        Assert.Equal(new XenstoreWatchEvent("data", "w"), events.Current);   // fired at registration
        Assert.Equal(0, Host.Xenstore.Write(home + "/data/from-dom0", "x"));   // the toolstack writes
        Assert.True(await events.MoveNextAsync());
        Assert.Equal(new XenstoreWatchEvent("data/from-dom0", "w"), events.Current);   // relative, as registered
    }

    [Fact]
    public async Task XS06_TransactionsFromTwoDomainsConflict_AndRetryUntilEveryIncrementLands()
    {
        string home = Home(new EmulatedGuestId(DomU.Id.Value));
        Assert.Equal(0, Host.Xenstore.Write(home + "/data/counter", "0"));
        await using var guest = XenstoreClient.OpenXenbus(PU);
        await using var dom0 = XenstoreClient.OpenXenbus(P0);
        int bodies = 0;
        // At most 2 open transactions per connection (a guest may hold 10: XS04 quota).
        using var guestSlots = new SemaphoreSlim(2);
        using var dom0Slots = new SemaphoreSlim(2);
        async Task Increment(XenstoreClient c, SemaphoreSlim slots, string path)
        {
            await slots.WaitAsync();
            try
            {
            await c.TransactionAsync(async (tx, ct) =>
            {
                Interlocked.Increment(ref bodies);
                int v = int.Parse(await tx.ReadStringAsync(path, ct), System.Globalization.CultureInfo.InvariantCulture);
                await Task.Yield();   // let the other side interleave
                await tx.WriteAsync(path, (v + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), ct);
            });
            }
            finally { slots.Release(); }
        }
        const int Each = 25;   // 50 increments: fewer rounds than the client's 64 attempts, so none can starve out
        var work = new List<Task>();
        for (int i = 0; i < Each; i++)
        {
            work.Add(Task.Run(() => Increment(guest, guestSlots, "data/counter")));
            work.Add(Task.Run(() => Increment(dom0, dom0Slots, home + "/data/counter")));
        }
        await Task.WhenAll(work).WaitAsync(Patience);
        Assert.Equal((2 * Each).ToString(System.Globalization.CultureInfo.InvariantCulture), Host.Xenstore.Read(home + "/data/counter"));
        Assert.True(bodies > 2 * Each, $"{bodies} transaction bodies for {2 * Each} increments: no conflict was ever retried");
    }

    [Fact]
    public async Task XS07_SocketClientOfXenstored_SeesTheGuestsHomeAndDomainLifecycle()
    {
        string dir = Directory.CreateTempSubdirectory("xenshare-xsc-").FullName;
        try
        {
            await using (var server = XenstoreSocketServer.Start(Host.Xenstore, Path.Combine(dir, "socket")))
            await using (var toolstack = XenstoreClient.ConnectSocket(server.Path))
            {
                Assert.Contains(DomU.Id.Value.ToString(System.Globalization.CultureInfo.InvariantCulture), await toolstack.DirectoryAsync("/local/domain"));
                Assert.True(await toolstack.IsDomainIntroducedAsync(DomU.Id));
                await toolstack.MkdirAsync("/tool/xenshare");
                await toolstack.SetPermissionsAsync("/tool/xenshare", [new XenstorePermission(DomainId.Dom0, XenstoreAccess.None), new XenstorePermission(DomU.Id, XenstoreAccess.Read)]);
                await using (var guest = XenstoreClient.OpenXenbus(PU))
                {
                    await guest.DirectoryAsync("/tool/xenshare");                                  // now readable
                    var e = await Assert.ThrowsAsync<XenstoreException>(() => guest.WriteAsync("/tool/xenshare/x", "1"));
                    Assert.Equal(Errno.EACCES, e.Errno);
                }
                using var cts = new CancellationTokenSource(Patience);
                await using var released = toolstack.WatchAsync("@releaseDomain", "gone", cts.Token).GetAsyncEnumerator(cts.Token);
                Assert.True(await released.MoveNextAsync());                                    // registration
                var extra = Host.CreateGuest(new XenShare.Emulation.Hypervisor.DomainConfig { RamPages = 256, UnpopulatedPages = 256 });
                Host.DestroyGuest(extra);
                Assert.True(await released.MoveNextAsync());
                Assert.Equal(new XenstoreWatchEvent("@releaseDomain", "gone"), released.Current);   // XS08
                await toolstack.RemoveAsync("/tool/xenshare");
            }
            Assert.Equal(0, Host.Xenstore.ConnectionCount);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
