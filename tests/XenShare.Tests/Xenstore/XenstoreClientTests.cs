using System.Buffers.Binary;
using System.Text;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Xenstore;

namespace XenShare.Tests.Xenstore;

/// <summary>The xenstore client (XS01-XS07) against <see cref="FakeXenstored"/>, over a real Unix socket
/// and over the xenbus device of a fake guest process.</summary>
public sealed class XenstoreClientTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    /// <summary>A client connected to a fresh fake daemon over one of the two transports.</summary>
    private sealed class Rig : IAsyncDisposable
    {
        private readonly FakeXenstoredSocketServer? _server;

        public Rig(string transport)
        {
            Daemon = new FakeXenstored();
            if (transport == "socket")
            {
                _server = new FakeXenstoredSocketServer(Daemon);
                Client = XenstoreClient.ConnectSocket(_server.SocketPath);
            }
            else
            {
                Process = new FakeXenbusProcess(Daemon);
                Client = XenstoreClient.OpenXenbus(Process);
            }
        }

        public FakeXenstored Daemon { get; }

        public FakeXenbusProcess? Process { get; }

        public XenstoreClient Client { get; }

        public XsRequest[] RequestsOf(uint type) => Daemon.Requests.Where(r => r.Type == type).ToArray();

        public async ValueTask DisposeAsync()
        {
            await Client.DisposeAsync();
            _server?.Dispose();
            Process?.Dispose();
        }
    }

    private static byte[] Header(uint type, uint reqId, uint txId, uint len)
    {
        var bytes = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, type);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(4), reqId);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), txId);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(12), len);
        return bytes;
    }

    // ---- XS01: framing and request bookkeeping ----

    [Fact]
    public async Task XS01_HeaderAndPayloadOnTheWire()
    {
        await using var rig = new Rig("socket");
        await rig.Client.WriteAsync("/vm/a", "hello");
        Assert.Equal("hello", await rig.Client.ReadStringAsync("/vm/a"));
        await rig.Client.SetPermissionsAsync("/vm/a", [new(new DomainId(0), XenstoreAccess.None), new(new DomainId(5), XenstoreAccess.Read)]);
        Assert.Equal("/local/domain/7", await rig.Client.GetDomainPathAsync(new DomainId(7)));

        var requests = rig.Daemon.Requests.ToArray();
        Assert.Equal([XsWire.XS_WRITE, XsWire.XS_READ, XsWire.XS_SET_PERMS, XsWire.XS_GET_DOMAIN_PATH], requests.Select(r => r.Type));
        // WRITE: path NUL value, the value without a terminator; len counts exactly the payload.
        Assert.Equal("/vm/a\0hello"u8.ToArray(), requests[0].Payload);
        Assert.Equal("/vm/a\0"u8.ToArray(), requests[1].Payload);
        Assert.Equal("/vm/a\0n0\0r5\0"u8.ToArray(), requests[2].Payload);
        Assert.Equal("7\0"u8.ToArray(), requests[3].Payload);
        Assert.All(requests, r => Assert.Equal(0u, r.TxId));
        Assert.All(requests, r => Assert.NotEqual(0u, r.ReqId));
        Assert.Equal(requests.Length, requests.Select(r => r.ReqId).Distinct().Count());
    }

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS01_ConcurrentRequestsGetTheirOwnReplies(string transport)
    {
        await using var rig = new Rig(transport);
        const int Threads = 8, PerThread = 40;
        var workers = Enumerable.Range(0, Threads).Select(t => Task.Run(async () =>
        {
            for (int i = 0; i < PerThread; i++)
            {
                string path = $"/c/{t}/{i}";
                await rig.Client.WriteAsync(path, $"value-{t}-{i}");
                Assert.Equal($"value-{t}-{i}", await rig.Client.ReadStringAsync(path));
            }
            return (await rig.Client.DirectoryAsync($"/c/{t}")).Count;
        })).ToArray();
        int[] counts = await Task.WhenAll(workers).WaitAsync(Patience);
        Assert.All(counts, c => Assert.Equal(PerThread, c));
    }

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS01_OversizedReplyBreaksTheConnection(string transport)
    {
        await using var rig = new Rig(transport);
        rig.Daemon.StallReads["/slow"] = true;
        var pending = rig.Client.ReadAsync("/slow");
        var stalled = await rig.Daemon.NextStalledAsync();
        // A reply to the pending request, but announcing 5000 bytes: over XENSTORE_PAYLOAD_MAX.
        stalled.Connection.SendRaw([.. Header(XsWire.XS_READ, stalled.ReqId, 0, 5000), .. new byte[5000]]);
        await Assert.ThrowsAsync<IOException>(() => pending.WaitAsync(Patience));
        await rig.Client.ReaderCompletion.WaitAsync(Patience);
        await Assert.ThrowsAsync<IOException>(() => rig.Client.ReadAsync("/other"));
    }

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS01_UnknownReqIdBreaksTheConnection(string transport)
    {
        await using var rig = new Rig(transport);
        rig.Daemon.StallReads["/slow"] = true;
        var pending = rig.Client.ReadAsync("/slow");
        var watch = rig.Client.WatchAsync("/w", "t").GetAsyncEnumerator();
        // Over the socket the watch registers at once; over xenbus it waits for the stalled read's reply
        // (Linux's xenbus device deadlocks otherwise: XS07_Xenbus_WatchWaitsForRepliesInFlight).
        var registered = watch.MoveNextAsync().AsTask();
        if (transport == "socket") Assert.True(await registered.WaitAsync(Patience));
        var stalled = await rig.Daemon.NextStalledAsync();
        stalled.Connection.SendRaw([.. Header(XsWire.XS_READ, stalled.ReqId + 1000, 0, 3), .. "OK\0"u8.ToArray()]);
        await Assert.ThrowsAsync<IOException>(() => pending.WaitAsync(Patience));
        // The watch learns about the broken connection too, and disposing it does not throw.
        await Assert.ThrowsAsync<IOException>(() => (transport == "socket" ? watch.MoveNextAsync().AsTask() : registered).WaitAsync(Patience));
        await watch.DisposeAsync();
        await rig.Client.ReaderCompletion.WaitAsync(Patience);
    }

    /// <summary>Linux 6.1's <c>/dev/xen/xenbus</c> sends a request's payload from the open file's one message
    /// buffer after write(2) has returned, so the next write can overwrite it; and it handles XS_WATCH and
    /// XS_UNWATCH inside write(2) under the file's message lock that its reply thread needs (a deadlock when a
    /// reply is in flight, seen in the real-Xen stage). Over the xenbus transport the client therefore writes
    /// one request at a time, each after the reply of the one before is read, in the order they were made;
    /// over the socket requests are pipelined.</summary>
    [Fact]
    public async Task XS07_Xenbus_OneRequestInFlight_InOrder_WatchAndUnwatchToo()
    {
        await using var rig = new Rig("xenbus");
        await rig.Client.WriteAsync("/slow", "s");
        await rig.Client.WriteAsync("/slow2", "s");
        await rig.Client.WriteAsync("/plain", "p");
        rig.Daemon.StallReads["/slow"] = true;
        var slow = rig.Client.ReadAsync("/slow");
        await rig.Daemon.NextStalledAsync();
        int before = rig.Daemon.Requests.Count;
        var watch = rig.Client.WatchAsync("/w", "t").GetAsyncEnumerator();
        var registered = watch.MoveNextAsync().AsTask();
        var write = rig.Client.WriteAsync("/other", "1");
        var read = rig.Client.ReadStringAsync("/plain");
        // Nothing else can have gone out: the stalled read's reply has not come.
        Assert.Equal(before, rig.Daemon.Requests.Count);
        Assert.False(registered.IsCompleted || write.IsCompleted || read.IsCompleted);
        rig.Daemon.ReleaseStalled();
        await slow.WaitAsync(Patience);
        Assert.True(await registered.WaitAsync(Patience));
        await write.WaitAsync(Patience);
        Assert.Equal("p", await read.WaitAsync(Patience));
        var order = rig.Daemon.Requests.Skip(before).Select(r => r.Type).ToArray();
        Assert.Equal([XsWire.XS_WATCH, XsWire.XS_WRITE, XsWire.XS_READ], order);
        // The unwatch at dispose waits in the same way and completes.
        rig.Daemon.StallReads["/slow2"] = true;
        var slow2 = rig.Client.ReadAsync("/slow2");
        await rig.Daemon.NextStalledAsync();
        var disposed = watch.DisposeAsync().AsTask();
        Assert.Empty(rig.RequestsOf(XsWire.XS_UNWATCH));
        rig.Daemon.ReleaseStalled();
        await slow2.WaitAsync(Patience);
        await disposed.WaitAsync(Patience);
        Assert.Single(rig.RequestsOf(XsWire.XS_UNWATCH));
        Assert.Equal(0, rig.Process!.PipelinedWrites);
        Assert.Equal(1, rig.Process.MaxInFlight);
    }

    /// <summary>Many callers at once on one xenbus connection (the display server's device backends share one
    /// client): every read gets its own node's value, nothing is ever written while a reply is unread, and the
    /// socket transport, which may pipeline, gets the same answers.</summary>
    [Theory]
    [InlineData("xenbus")]
    [InlineData("socket")]
    public async Task XS07_ConcurrentCallersOnOneConnection_EachReadGetsItsOwnValue(string transport)
    {
        await using var rig = new Rig(transport);
        const int Nodes = 16;
        for (int i = 0; i < Nodes; i++) await rig.Client.WriteAsync($"/dev/{i}/be-alloc", i.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var work = Enumerable.Range(0, 8).Select(worker => Task.Run(async () =>
        {
            for (int round = 0; round < 25; round++)
            {
                int i = (worker * 7 + round) % Nodes;
                string expected = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
                Assert.Equal(expected, await rig.Client.ReadStringAsync($"/dev/{i}/be-alloc"));
                await rig.Client.WriteAsync($"/dev/{i}/seen-{worker}", "1");
            }
        })).ToArray();
        await Task.WhenAll(work).WaitAsync(TimeSpan.FromMinutes(2));
        if (rig.Process is { } process)
        {
            Assert.Equal(0, process.PipelinedWrites);
            Assert.Equal(1, process.MaxInFlight);
            Assert.Equal(0, process.WritesNotOneMessage);
        }
    }

    [Theory]
    [InlineData("socket", "wrong-type")]
    [InlineData("xenbus", "wrong-type")]
    [InlineData("socket", "malformed-event")]
    [InlineData("xenbus", "malformed-event")]
    public async Task XS01_ProtocolViolationsBreakTheConnection(string transport, string violation)
    {
        await using var rig = new Rig(transport);
        rig.Daemon.StallReads["/slow"] = true;
        var pending = rig.Client.ReadAsync("/slow");
        var stalled = await rig.Daemon.NextStalledAsync();
        byte[] hostile = violation == "wrong-type"
            ? [.. Header(XsWire.XS_DIRECTORY, stalled.ReqId, 0, 2), .. "a\0"u8.ToArray()] // a READ answered as DIRECTORY
            : [.. Header(XsWire.XS_WATCH_EVENT, 0, 0, 4), .. "/abc"u8.ToArray()];        // an event without its token
        stalled.Connection.SendRaw(hostile);
        await Assert.ThrowsAsync<IOException>(() => pending.WaitAsync(Patience));
        await rig.Client.ReaderCompletion.WaitAsync(Patience);
        await Assert.ThrowsAsync<IOException>(() => rig.Client.MkdirAsync("/later"));
    }

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS05_EventForAnUnknownTokenIsDropped(string transport)
    {
        await using var rig = new Rig(transport);
        await rig.Client.WriteAsync("/slow", "v");
        rig.Daemon.StallReads["/slow"] = true;
        var pending = rig.Client.ReadStringAsync("/slow");
        var stalled = await rig.Daemon.NextStalledAsync();
        // A watch that was just removed may still fire once: that is not a protocol violation.
        stalled.Connection.SendEvent("/gone", "nobody");
        rig.Daemon.ReleaseStalled();
        Assert.Equal("v", await pending.WaitAsync(Patience));
        await rig.Client.MkdirAsync("/still-open");
    }

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS05_DisposingTheClientEndsWatches(string transport)
    {
        var rig = new Rig(transport);
        await using var watch = rig.Client.WatchAsync("/w", "t").GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Patience));
        var next = watch.MoveNextAsync().AsTask();
        await rig.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => next.WaitAsync(Patience));
    }

    [Fact]
    public async Task XS01_PathsAndSizesValidatedBeforeSending()
    {
        await using var rig = new Rig("socket");
        await Assert.ThrowsAsync<ArgumentException>(() => rig.Client.ReadAsync(""));
        await Assert.ThrowsAsync<ArgumentException>(() => rig.Client.ReadAsync("/a\0b"));
        await Assert.ThrowsAsync<ArgumentException>(() => rig.Client.ReadAsync("/" + new string('x', XsWire.XENSTORE_ABS_PATH_MAX)));
        await Assert.ThrowsAsync<ArgumentException>(() => rig.Client.ReadAsync(new string('x', XsWire.XENSTORE_REL_PATH_MAX + 1)));
        await Assert.ThrowsAsync<ArgumentException>(() => rig.Client.WriteAsync("/big", new byte[XsWire.XENSTORE_PAYLOAD_MAX]));
        await Assert.ThrowsAsync<ArgumentException>(() => rig.Client.SetPermissionsAsync("/a", []));
        Assert.Throws<ArgumentException>(() => rig.Client.WatchAsync("/w", "bad\0token"));
        Assert.Empty(rig.Daemon.Requests);

        // At the limits the requests go out (and the daemon answers ENOENT).
        var abs = await Assert.ThrowsAsync<XenstoreException>(() => rig.Client.ReadAsync("/" + new string('x', XsWire.XENSTORE_ABS_PATH_MAX - 1)));
        Assert.Equal(Errno.ENOENT, abs.Errno);
        await Assert.ThrowsAsync<XenstoreException>(() => rig.Client.ReadAsync(new string('x', XsWire.XENSTORE_REL_PATH_MAX)));
        await rig.Client.WriteAsync("/big", new byte[XsWire.XENSTORE_PAYLOAD_MAX - "/big\0".Length]);
        Assert.Equal(XsWire.XENSTORE_PAYLOAD_MAX - 5, (await rig.Client.ReadAsync("/big")).Length);
    }

    // ---- XS02: errors, cancellation, disposal ----

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS02_ErrorReplyBecomesXenstoreExceptionWithErrno(string transport)
    {
        await using var rig = new Rig(transport);
        var e = await Assert.ThrowsAsync<XenstoreException>(() => rig.Client.ReadAsync("/missing/node"));
        Assert.Equal(Errno.ENOENT, e.Errno);
        Assert.Equal("XS_READ", e.Operation);
        Assert.Equal("/missing/node", e.Path);
        Assert.IsAssignableFrom<XenShareException>(e);
        Assert.Null(await rig.Client.TryReadStringAsync("/missing/node"));

        var rm = await Assert.ThrowsAsync<XenstoreException>(() => rig.Client.RemoveAsync("/missing"));
        Assert.Equal(Errno.ENOENT, rm.Errno);
        Assert.Equal("XS_RM", rm.Operation);

        // An error reply is an answer, not a protocol fault: the connection keeps working.
        await rig.Client.WriteAsync("/still", "works");
        Assert.Equal("works", await rig.Client.ReadStringAsync("/still"));
    }

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS02_CancellingAPendingReadLeavesTheConnectionUsable(string transport)
    {
        await using var rig = new Rig(transport);
        await rig.Client.WriteAsync("/slow", "late");
        rig.Daemon.StallReads["/slow"] = true;
        using var cts = new CancellationTokenSource();
        var pending = rig.Client.ReadStringAsync("/slow", cts.Token);
        await rig.Daemon.NextStalledAsync();
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending.WaitAsync(Patience));

        // The late reply is recognised as the abandoned request's and dropped, not taken as hostile.
        rig.Daemon.ReleaseStalled();
        rig.Daemon.StallReads.Clear();
        Assert.Equal("late", await rig.Client.ReadStringAsync("/slow").WaitAsync(Patience));

        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();
        int before = rig.Daemon.Requests.Count;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => rig.Client.ReadAsync("/slow", cancelled.Token));
        Assert.Equal(before, rig.Daemon.Requests.Count); // nothing is sent for an already cancelled request
    }

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS02_DisposeFailsPendingRequestsAndEndsTheReader(string transport)
    {
        var rig = new Rig(transport);
        rig.Daemon.StallReads["/slow"] = true;
        var pending = rig.Client.ReadAsync("/slow");
        await rig.Daemon.NextStalledAsync();
        rig.Client.Dispose();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => pending.WaitAsync(Patience));
        await rig.Client.ReaderCompletion.WaitAsync(Patience);
        await Assert.ThrowsAsync<ObjectDisposedException>(() => rig.Client.ReadAsync("/slow"));
        if (rig.Process is not null) Assert.True(rig.Process.Closed);
        await rig.DisposeAsync(); // twice is fine
    }

    // ---- XS03: node operations ----

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS03_ReadWriteMkdirRemoveDirectory(string transport)
    {
        await using var rig = new Rig(transport);
        var c = rig.Client;
        await c.WriteAsync("/local/domain/1/data/ring-ref", "8");
        await c.WriteAsync("/local/domain/1/data/blob", new byte[] { 0, 1, 2, 255 });
        await c.MkdirAsync("/local/domain/1/data/empty");
        Assert.Equal("8", await c.ReadStringAsync("/local/domain/1/data/ring-ref"));
        Assert.Equal(new byte[] { 0, 1, 2, 255 }, await c.ReadAsync("/local/domain/1/data/blob"));
        Assert.Empty(await c.ReadAsync("/local/domain/1/data/empty"));
        Assert.Equal(["blob", "empty", "ring-ref"], await c.DirectoryAsync("/local/domain/1/data"));
        Assert.Empty(await c.DirectoryAsync("/local/domain/1/data/empty"));
        // A relative path is relative to the connection's home (the fake's /local/domain/1).
        Assert.Equal("8", await c.ReadStringAsync("data/ring-ref"));
        await c.WriteAsync("/utf8", "€uro");
        Assert.Equal("€uro", await c.ReadStringAsync("/utf8"));
        Assert.Equal("/utf8\0€uro"u8.ToArray(), rig.RequestsOf(XsWire.XS_WRITE).Last().Payload);

        await c.RemoveAsync("/local/domain/1/data");
        Assert.Null(await c.TryReadStringAsync("/local/domain/1/data/ring-ref"));
        Assert.Empty(await c.DirectoryAsync("/local/domain/1"));

        Assert.Equal("/local/domain/3", await c.GetDomainPathAsync(new DomainId(3)));
        Assert.True(await c.IsDomainIntroducedAsync(DomainId.Dom0));
        Assert.False(await c.IsDomainIntroducedAsync(new DomainId(9)));
        await c.IntroduceDomainAsync(new DomainId(9), 0x1234, new EventPort(3));
        Assert.True(await c.IsDomainIntroducedAsync(new DomainId(9)));
        await c.ReleaseDomainAsync(new DomainId(9));
        Assert.False(await c.IsDomainIntroducedAsync(new DomainId(9)));
        Assert.Equal("9\0"u8.ToArray(), rig.RequestsOf(XsWire.XS_RELEASE).Single().Payload);
        Assert.Equal("9\04660\03\0"u8.ToArray(), rig.RequestsOf(XsWire.XS_INTRODUCE).Single().Payload);
    }

    // ---- XS04: permissions ----

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS04_PermissionsRoundTrip(string transport)
    {
        await using var rig = new Rig(transport);
        await rig.Client.WriteAsync("/shared/ring", "1");
        Assert.Equal([new XenstorePermission(DomainId.Dom0, XenstoreAccess.None)], await rig.Client.GetPermissionsAsync("/shared/ring"));
        XenstorePermission[] perms =
        [
            new(new DomainId(2), XenstoreAccess.None),
            new(new DomainId(5), XenstoreAccess.Read),
            new(new DomainId(6), XenstoreAccess.Write),
            new(new DomainId(65535), XenstoreAccess.Both),
        ];
        await rig.Client.SetPermissionsAsync("/shared/ring", perms);
        Assert.Equal(perms, await rig.Client.GetPermissionsAsync("/shared/ring"));
        Assert.Equal("/shared/ring\0n2\0r5\0w6\0b65535\0"u8.ToArray(), rig.RequestsOf(XsWire.XS_SET_PERMS).Single().Payload);
        var e = await Assert.ThrowsAsync<XenstoreException>(() => rig.Client.GetPermissionsAsync("/nope"));
        Assert.Equal("XS_GET_PERMS", e.Operation);
    }

    [Fact]
    public void XS04_PermissionWireForm()
    {
        Assert.Equal(new XenstorePermission(new DomainId(12), XenstoreAccess.Read), XenstorePermission.Parse("r12"));
        Assert.Equal(new XenstorePermission(DomainId.Dom0, XenstoreAccess.Both), XenstorePermission.Parse("b0"));
        Assert.Equal("w7", new XenstorePermission(new DomainId(7), XenstoreAccess.Write).ToString());
        Assert.Equal("n0", new XenstorePermission(DomainId.Dom0, XenstoreAccess.None).ToString());
        Assert.Equal(XenstoreAccess.Both, XenstoreAccess.Read | XenstoreAccess.Write);
        foreach (var bad in new[] { "", "r", "x1", "r-1", "r+1", "r 1", "r65536", "R1", "r1a" })
            Assert.False(XenstorePermission.TryParse(bad, out _), bad);
        Assert.Throws<FormatException>(() => XenstorePermission.Parse("q3"));
        Assert.Throws<ArgumentOutOfRangeException>(() => XenstorePermission.LetterOf((XenstoreAccess)7));
    }

    // ---- XS05: watches ----

    [Theory]
    [InlineData("socket", false)]
    [InlineData("socket", true)]
    [InlineData("xenbus", false)]
    [InlineData("xenbus", true)]
    public async Task XS05_WatchEventsInOrderBetweenReplies(string transport, bool eventBeforeReply)
    {
        await using var rig = new Rig(transport);
        rig.Daemon.WatchEventBeforeReply = eventBeforeReply;
        var c = rig.Client;
        await using (var watch = c.WatchAsync("/backend/vif", "vif-token").GetAsyncEnumerator())
        {
            // Nothing is registered until the enumeration starts.
            Assert.Empty(rig.RequestsOf(XsWire.XS_WATCH));
            Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Patience));
            Assert.Equal(new XenstoreWatchEvent("/backend/vif", "vif-token"), watch.Current);
            Assert.Equal("/backend/vif\0vif-token\0"u8.ToArray(), rig.RequestsOf(XsWire.XS_WATCH).Single().Payload);

            // Changes, interleaved with unrelated traffic and replies.
            await c.WriteAsync("/backend/vif/1", "a");
            await c.WriteAsync("/elsewhere", "x");
            Assert.Equal("a", await c.ReadStringAsync("/backend/vif/1"));
            await c.WriteAsync("/backend/vif/1/state", "4");
            await c.MkdirAsync("/backend/vif/2");
            await c.RemoveAsync("/backend/vif/1");
            string[] expected = ["/backend/vif/1", "/backend/vif/1/state", "/backend/vif/2", "/backend/vif/1"];
            foreach (var path in expected)
            {
                Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Patience));
                Assert.Equal(new XenstoreWatchEvent(path, "vif-token"), watch.Current);
            }
        }
        // Disposing the enumerator unregisters the watch.
        Assert.Equal("/backend/vif\0vif-token\0"u8.ToArray(), rig.RequestsOf(XsWire.XS_UNWATCH).Single().Payload);

        // The token is free again.
        await using var again = c.WatchAsync("/backend", "vif-token").GetAsyncEnumerator();
        Assert.True(await again.MoveNextAsync().AsTask().WaitAsync(Patience));
        Assert.Equal("/backend", again.Current.Path);
    }

    [Fact]
    public async Task XS05_CancellationEndsTheWatchAndUnwatches()
    {
        await using var rig = new Rig("xenbus");
        using var cts = new CancellationTokenSource();
        var seen = new List<XenstoreWatchEvent>();
        var registered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var consumer = Task.Run(async () =>
        {
            await foreach (var e in rig.Client.WatchAsync("/w", "tok", cts.Token))
            {
                seen.Add(e);
                registered.TrySetResult();
                if (e.Path == "/w/last") await cts.CancelAsync();
            }
        });
        await registered.Task.WaitAsync(Patience);
        for (int i = 0; i < 50; i++) await rig.Client.WriteAsync($"/w/{i}", "v");
        await rig.Client.WriteAsync("/w/last", "v");
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => consumer.WaitAsync(Patience));
        Assert.Equal(["/w", .. Enumerable.Range(0, 50).Select(i => $"/w/{i}"), "/w/last"], seen.Select(e => e.Path));
        Assert.Single(rig.RequestsOf(XsWire.XS_UNWATCH));

        // A token in use cannot be registered twice on one client.
        await using var first = rig.Client.WatchAsync("/a", "dup").GetAsyncEnumerator();
        Assert.True(await first.MoveNextAsync().AsTask().WaitAsync(Patience));
        await using var second = rig.Client.WatchAsync("/b", "dup").GetAsyncEnumerator();
        await Assert.ThrowsAsync<InvalidOperationException>(() => second.MoveNextAsync().AsTask());
    }

    // ---- XS06: transactions ----

    [Theory]
    [InlineData("socket")]
    [InlineData("xenbus")]
    public async Task XS06_TransactionRetriedOnEagain(string transport)
    {
        await using var rig = new Rig(transport);
        await rig.Client.WriteAsync("/counter", "10");
        rig.Daemon.FailCommits = 3;
        int runs = 0;
        int result = await rig.Client.TransactionAsync(async (tx, ct) =>
        {
            runs++;
            int value = int.Parse(await tx.ReadStringAsync("/counter", ct), System.Globalization.CultureInfo.InvariantCulture);
            await tx.WriteAsync("/counter", (value + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), ct);
            return value + 1;
        });
        Assert.Equal(4, runs);
        Assert.Equal(11, result);
        Assert.Equal("11", rig.Daemon.ValueOf("/counter"));
        Assert.Equal(4, rig.RequestsOf(XsWire.XS_TRANSACTION_START).Length);
        var ends = rig.RequestsOf(XsWire.XS_TRANSACTION_END);
        Assert.Equal(4, ends.Length);
        Assert.All(ends, e => Assert.Equal("T\0"u8.ToArray(), e.Payload));
        Assert.All(ends, e => Assert.NotEqual(0u, e.TxId));
        // TRANSACTION_START carries the empty string.
        Assert.All(rig.RequestsOf(XsWire.XS_TRANSACTION_START), r => Assert.Equal(new byte[] { 0 }, r.Payload));
        // The body's requests carry the transaction id of their attempt.
        Assert.All(rig.RequestsOf(XsWire.XS_READ), r => Assert.Contains(r.TxId, ends.Select(e => e.TxId)));
    }

    [Fact]
    public async Task XS06_RealConflictIsRetriedOnFreshData()
    {
        await using var rig = new Rig("socket");
        await rig.Client.WriteAsync("/x", "first");
        var seen = new List<string>();
        await rig.Client.TransactionAsync(async (tx, ct) =>
        {
            string value = await tx.ReadStringAsync("/x", ct);
            seen.Add(value);
            // Another writer outside the transaction, once: the commit must answer EAGAIN.
            if (seen.Count == 1) await rig.Client.WriteAsync("/x", "second", ct);
            await tx.WriteAsync("/y", value, ct);
        });
        Assert.Equal(["first", "second"], seen);
        Assert.Equal("second", rig.Daemon.ValueOf("/y"));
    }

    [Fact]
    public async Task XS06_TransactionAbortedWhenTheBodyThrows()
    {
        await using var rig = new Rig("xenbus");
        XenstoreTransaction? escaped = null;
        await Assert.ThrowsAsync<InvalidOperationException>(() => rig.Client.TransactionAsync<int>(async (tx, ct) =>
        {
            escaped = tx;
            await tx.WriteAsync("/should-not-exist", "v", ct);
            throw new InvalidOperationException("body failed");
        }));
        Assert.Null(rig.Daemon.ValueOf("/should-not-exist"));
        var end = rig.RequestsOf(XsWire.XS_TRANSACTION_END).Single();
        Assert.Equal("F\0"u8.ToArray(), end.Payload);
        Assert.Equal(escaped!.Id, end.TxId);
        // The ended transaction refuses further use.
        await Assert.ThrowsAsync<InvalidOperationException>(() => escaped.ReadAsync("/x"));
    }

    [Fact]
    public async Task XS06_TransactionGivesUpAfterMaxAttempts()
    {
        await using var rig = new Rig("socket");
        rig.Client.MaxTransactionAttempts = 3;
        rig.Daemon.FailCommits = 100;
        int runs = 0;
        var e = await Assert.ThrowsAsync<XenstoreException>(() => rig.Client.TransactionAsync(async (tx, ct) =>
        {
            runs++;
            await tx.MkdirAsync("/d", ct);
        }));
        Assert.Equal(Errno.EAGAIN, e.Errno);
        Assert.Equal("XS_TRANSACTION_END", e.Operation);
        Assert.Equal(3, runs);
        Assert.Throws<ArgumentOutOfRangeException>(() => rig.Client.MaxTransactionAttempts = 0);
    }

    // ---- XS07: the xenbus device through the seam ----

    [Fact]
    public async Task XS07_XenbusTransportOverTheSeam()
    {
        await using var rig = new Rig("xenbus");
        var process = rig.Process!;
        var c = rig.Client;
        await using var watch = c.WatchAsync("/dev", "d").GetAsyncEnumerator();
        Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Patience));
        for (int i = 0; i < 20; i++) await c.WriteAsync($"/dev/{i}", new string('v', i * 37));
        for (int i = 0; i < 20; i++) Assert.Equal(new string('v', i * 37), await c.ReadStringAsync($"/dev/{i}"));
        for (int i = 0; i < 20; i++)
        {
            Assert.True(await watch.MoveNextAsync().AsTask().WaitAsync(Patience));
            Assert.Equal($"/dev/{i}", watch.Current.Path);
        }
        // Every request was one whole write; replies came in slices (more reads than messages).
        Assert.Equal(0, process.WritesNotOneMessage);
        Assert.Equal(rig.Daemon.Requests.Count, process.Writes);
        Assert.True(process.Reads > 2 * process.Writes, $"{process.Reads} reads for {process.Writes} writes");

        // One byte per read still reassembles.
        process.ReadSlices = [1];
        Assert.Equal(new string('v', 19 * 37), await c.ReadStringAsync("/dev/19").WaitAsync(Patience));
    }

    [Fact]
    public void XS07_OpenFailureCarriesTheErrno()
    {
        var process = new FakeXenbusProcess(new FakeXenstored()) { OpenErrno = Errno.EACCES };
        var e = Assert.Throws<XenShareException>(() => XenstoreClient.OpenXenbus(process));
        Assert.Equal(Errno.EACCES, e.Errno);
    }
}
