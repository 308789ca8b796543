using System.Globalization;
using XenShare.Abi;
using XenShare.Xenstore;

namespace XenShare.Conformance;

/// <summary>
/// xenstore as a domain's process sees it (XS02-XS07), through <c>/dev/xen/xenbus</c> on the seam with the
/// typed client: the emulated daemon on the emulator, Xen's C xenstored in the real-Xen stage. Every
/// scenario works under the domain's <c>data</c> directory (relative paths): the toolstack makes the home
/// itself read-only for a guest and gives it <c>data</c> (what the real-Xen stage's domU showed), so it
/// runs in dom0 and in a guest alike.
/// </summary>
internal static class XenstoreScenarios
{
    private const string Root = "data/xenshare-conformance";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    public static IEnumerable<ConformanceScenario> All()
    {
        yield return new("XS02+XS03+XS07", "xenbus device: write, read, mkdir, directory, rm under the home; errors as errno", Basics);
        yield return new("XS04", "a node the domain creates is its own; the owner sets and reads permissions", Permissions);
        yield return new("XS05", "a watch fires once at registration, then for a change below it, with its token", Watch);
        yield return new("XS06", "a transaction commits atomically; a conflicting write makes the commit EAGAIN and the client retries", Transaction);
    }

    private static T Run<T>(Func<Task<T>> body) => Task.Run(body).WaitAsync(Patience).GetAwaiter().GetResult();

    private static void Run(Func<Task> body) => Task.Run(body).WaitAsync(Patience).GetAwaiter().GetResult();

    private static string Node(string leaf) => Root + "/" + leaf;

    private static void Basics(ConformanceContext c) => Run(async () =>
    {
        await using var xs = XenstoreClient.OpenXenbus(c.Process);
        try
        {
            string home = await xs.GetDomainPathAsync(c.Self);
            Check.Equal("/local/domain/" + c.Self.Value.ToString(CultureInfo.InvariantCulture), home, "GET_DOMAIN_PATH");
            await xs.WriteAsync(Node("a/b"), "value");                                     // parents created (XS03)
            Check.Equal("value", await xs.ReadStringAsync(Node("a/b")), "read back (relative)");
            Check.Equal("value", await xs.ReadStringAsync(home + "/" + Node("a/b")), "read back (absolute)");
            Check.Equal("", await xs.ReadStringAsync(Node("a")), "a parent made by the write is empty");
            await xs.MkdirAsync(Node("c"));
            var names = await xs.DirectoryAsync(Root);   // (relative to the home)
            Check.True(names.Count == 2 && names.Contains("a") && names.Contains("c"), "directory: " + string.Join(",", names));
            await xs.RemoveAsync(Node("a"));
            Check.Equal(null, await xs.TryReadStringAsync(Node("a/b")), "removed with its parent");
            var e = await Assert(() => xs.ReadStringAsync(Node("nothing")));
            Check.Equal(Errno.ENOENT, e.Errno, "read of a missing node");
        }
        finally { await Clean(xs); }
    });

    private static void Permissions(ConformanceContext c) => Run(async () =>
    {
        await using var xs = XenstoreClient.OpenXenbus(c.Process);
        try
        {
            await xs.WriteAsync(Node("p"), "x");
            var perms = await xs.GetPermissionsAsync(Node("p"));
            Check.Equal(c.Self, perms[0].Domain, "owner of a node the domain created");
            var other = c.Self.Value == 0 ? new DomainId(1) : DomainId.Dom0;
            await xs.SetPermissionsAsync(Node("p"), [new XenstorePermission(c.Self, XenstoreAccess.None), new XenstorePermission(other, XenstoreAccess.Read)]);
            perms = await xs.GetPermissionsAsync(Node("p"));
            Check.Equal(2, perms.Count, "permission entries");
            Check.Equal(new XenstorePermission(other, XenstoreAccess.Read), perms[1], "the reader entry");
        }
        finally { await Clean(xs); }
    });

    private static void Watch(ConformanceContext c) => Run(async () =>
    {
        await using var xs = XenstoreClient.OpenXenbus(c.Process);
        await using var writer = XenstoreClient.OpenXenbus(c.Process);
        try
        {
            await xs.MkdirAsync(Node("w"));
            using var cts = new CancellationTokenSource(Patience);
            await using (var events = xs.WatchAsync(Node("w"), "conformance", cts.Token).GetAsyncEnumerator(cts.Token))
            {
                Check.True(await events.MoveNextAsync(), "the registration event");
                Check.Equal(new XenstoreWatchEvent(Node("w"), "conformance"), events.Current, "registration event: path as registered, token");
                await writer.WriteAsync(Node("w/leaf"), "1");                          // another connection changes it
                Check.True(await events.MoveNextAsync(), "the change event");
                Check.Equal(new XenstoreWatchEvent(Node("w/leaf"), "conformance"), events.Current, "change below the watch (relative path)");
            }
        }
        finally { await Clean(xs); }
    });

    private static void Transaction(ConformanceContext c) => Run(async () =>
    {
        await using var xs = XenstoreClient.OpenXenbus(c.Process);
        await using var other = XenstoreClient.OpenXenbus(c.Process);
        try
        {
            await xs.WriteAsync(Node("t/x"), "0");
            int attempts = 0;
            await xs.TransactionAsync(async (tx, ct) =>
            {
                attempts++;
                string x = await tx.ReadStringAsync(Node("t/x"), ct);
                if (attempts == 1) await other.WriteAsync(Node("t/x"), "changed", ct);   // a conflicting write
                await tx.WriteAsync(Node("t/y"), x + "+1", ct);
                await tx.WriteAsync(Node("t/z"), "z", ct);
                Check.Equal(null, await other.TryReadStringAsync(Node("t/z"), ct), "not visible before the commit");
            });
            Check.Equal(2, attempts, "the first commit got EAGAIN and the body ran again");
            Check.Equal("changed+1", await xs.ReadStringAsync(Node("t/y")), "the retry read the new value");
            Check.Equal("z", await other.ReadStringAsync(Node("t/z")), "visible after the commit");
        }
        finally { await Clean(xs); }
    });

    private static async Task<XenstoreException> Assert(Func<Task> call)
    {
        try
        {
            await call();
        }
        catch (XenstoreException e)
        {
            return e;
        }
        throw new ConformanceException("expected a XenstoreException");
    }

    private static async Task Clean(XenstoreClient xs)
    {
        try { await xs.RemoveAsync(Root); }
        catch (XenstoreException) { }
    }
}
