using System.Buffers.Binary;
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
        yield return new("XS07/device", "the xenbus file's buffer: one message per write, header and payload in 4096 bytes (E2BIG, EINVAL), poll never says POLLOUT", Device);
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

    /// <summary>The raw <c>/dev/xen/xenbus</c> file as Linux 6.1 has it: what the client's rules and the
    /// emulated device's model (XenbusDriver) stand on.</summary>
    private static void Device(ConformanceContext c)
    {
        var p = c.Process;
        int fd = p.Open("/dev/xen/xenbus", Posix.O_RDWR | Posix.O_NONBLOCK | Posix.O_CLOEXEC);
        Check.Ok(fd, "open /dev/xen/xenbus");
        try
        {
            Span<PollFd> pfd = [new PollFd { Fd = fd, Events = (short)(Posix.POLLIN | Posix.POLLOUT | Posix.POLLRDNORM) }];
            Check.Equal(0, p.Poll(pfd, 0), "poll of an idle file (no POLLOUT)");
            Check.Errno(Errno.EAGAIN, p.Read(fd, new byte[16]), "non-blocking read of an idle file");
            var header = Message(XsWire.XS_WRITE, 1, []);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), (uint)(XsWire.XENSTORE_PAYLOAD_MAX - XsWire.HeaderSize + 1));
            Check.Errno(Errno.E2BIG, p.Write(fd, header), "a header announcing more than the buffer holds");
            Check.Errno(Errno.EINVAL, p.Write(fd, new byte[XsWire.XENSTORE_PAYLOAD_MAX + 1]), "a write longer than the buffer");
            // Two whole requests in one write: the first is acted on, the rest of the write dropped.
            byte[] first = Message(XsWire.XS_WRITE, 2, Strings(Node("raw1")), "a"u8);
            byte[] second = Message(XsWire.XS_WRITE, 3, Strings(Node("raw2")), "b"u8);
            byte[] both = [.. first, .. second];
            Check.Equal((long)both.Length, p.Write(fd, both), "write of two requests");
            var (type, req, payload) = ReadMessage(p, fd);
            Check.Equal((XsWire.XS_WRITE, 2u, "OK\0"), (type, req, payload), "the first request's reply");
            byte[] probe = Message(XsWire.XS_READ, 4, Strings(Node("raw2")));
            Check.Equal((long)probe.Length, p.Write(fd, probe), "write of a read");
            (type, req, payload) = ReadMessage(p, fd);
            Check.Equal((XsWire.XS_ERROR, 4u, "ENOENT\0"), (type, req, payload), "the second request of the write was dropped");
            Check.True(p.Poll(pfd, 0) >= 0, "poll after the replies were read");
            Check.Equal(0, pfd[0].REvents & Posix.POLLOUT, "poll never reports POLLOUT");
            byte[] rm = Message(XsWire.XS_RM, 5, Strings(Root));
            Check.Equal((long)rm.Length, p.Write(fd, rm), "write of a rm");
            (type, req, _) = ReadMessage(p, fd);
            Check.Equal((XsWire.XS_RM, 5u), (type, req), "rm reply");
        }
        finally
        {
            p.Close(fd);
        }
    }

    private static byte[] Strings(params string[] parts) =>
        System.Text.Encoding.UTF8.GetBytes(string.Concat(parts.Select(x => x + "\0")));

    private static byte[] Message(uint type, uint reqId, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> tail = default)
    {
        var bytes = new byte[XsWire.HeaderSize + payload.Length + tail.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, type);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), reqId);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), (uint)(payload.Length + tail.Length));
        payload.CopyTo(bytes.AsSpan(XsWire.HeaderSize));
        tail.CopyTo(bytes.AsSpan(XsWire.HeaderSize + payload.Length));
        return bytes;
    }

    /// <summary>One whole message from a non-blocking xenbus file: poll (a minute at most), then read.</summary>
    private static (uint Type, uint Req, string Payload) ReadMessage(IGuestProcess p, int fd)
    {
        var header = ReadExactly(p, fd, XsWire.HeaderSize);
        var body = ReadExactly(p, fd, (int)BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12)));
        return (BinaryPrimitives.ReadUInt32LittleEndian(header), BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)),
            System.Text.Encoding.UTF8.GetString(body));
    }

    private static byte[] ReadExactly(IGuestProcess p, int fd, int n)
    {
        var buffer = new byte[n];
        int got = 0;
        while (got < n)
        {
            Span<PollFd> pfd = [new PollFd { Fd = fd, Events = Posix.POLLIN }];
            Check.True(p.Poll(pfd, (int)Patience.TotalMilliseconds) == 1, "a reply within a minute");
            long r = p.Read(fd, buffer.AsSpan(got));
            Check.True(r > 0, $"read: {r}");
            got += (int)r;
        }
        return buffer;
    }

    private static async Task Clean(XenstoreClient xs)
    {
        try { await xs.RemoveAsync(Root); }
        catch (XenstoreException) { }
    }
}
