using System.Buffers.Binary;
using System.Text;
using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Tests.Emulation;

namespace XenShare.Tests.Xenstore;

/// <summary>XS07: <c>/dev/xen/xenbus</c> in every emulated domain, a connection to the host's xenstore
/// daemon through the seam: whole requests written (in any number of pieces), replies and watch events
/// read back as a byte stream.</summary>
public sealed class XenbusDeviceTests : EmulatorTest
{
    private const string Xenbus = "/dev/xen/xenbus";

    private static byte[] Request(uint type, uint req, params string[] args) =>
        XsRawConnection.Message(type, req, 0, XsRawConnection.Strings(args));

    /// <summary>Reads one whole message from the stream, however the reads split it.</summary>
    private static (uint Type, uint Req, string Payload) ReadMessage(GuestProcess p, int fd, int chunk = 4096)
    {
        var header = ReadExactly(p, fd, XsWire.HeaderSize, chunk);
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12));
        var payload = ReadExactly(p, fd, (int)len, chunk);
        return (BinaryPrimitives.ReadUInt32LittleEndian(header), BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)), Encoding.UTF8.GetString(payload));
    }

    private static byte[] ReadExactly(GuestProcess p, int fd, int n, int chunk)
    {
        var buf = new byte[n];
        int got = 0;
        while (got < n)
        {
            long r = p.Read(fd, buf.AsSpan(got, Math.Min(chunk, n - got)));
            Assert.True(r > 0, $"read: {r}");
            got += (int)r;
        }
        return buf;
    }

    [Fact]
    public void XS07_RequestsInPieces_RepliesAndEventsAsAStream_PartialReads()
    {
        int fd = Open(PU, Xenbus);
        var write = XsRawConnection.Message(XsWire.XS_WRITE, 7, 0, Encoding.UTF8.GetBytes("data/key\0value"));
        // Header split in two, then the payload: one request.
        Assert.Equal(5, PU.Write(fd, write.AsSpan(0, 5)));
        Assert.Equal(write.Length - 5, PU.Write(fd, write.AsSpan(5)));
        var (t, r, payload) = ReadMessage(PU, fd, chunk: 3);             // read back 3 bytes at a time
        Assert.Equal((XsWire.XS_WRITE, 7u, "OK\0"), (t, r, payload));
        Assert.Equal("value", Host.Xenstore.Read($"/local/domain/{DomU.Id.Value}/data/key"));

        // Two requests in one write: Linux acts on the first and drops the rest of the write.
        var two = Request(XsWire.XS_READ, 8, "data/key").Concat(Request(XsWire.XS_WATCH, 9, "data", "tok")).ToArray();
        Assert.Equal(two.Length, PU.Write(fd, two));
        Assert.Equal((XsWire.XS_READ, 8u, "value"), ReadMessage(PU, fd));
        // The watch was never registered (a second one with that token would be EEXIST): its reply and its
        // first event come in order now.
        Assert.Equal(Request(XsWire.XS_WATCH, 9, "data", "tok").Length, PU.Write(fd, Request(XsWire.XS_WATCH, 9, "data", "tok")));
        Assert.Equal((XsWire.XS_WATCH, 9u, "OK\0"), ReadMessage(PU, fd));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "data\0tok\0"), ReadMessage(PU, fd));
        // dom0 changes the node: the event arrives on the guest's file; poll says so first.
        Assert.Equal(0, Host.Xenstore.Write($"/local/domain/{DomU.Id.Value}/data/key", "new"));
        Span<PollFd> pfd = [new PollFd { Fd = fd, Events = Posix.POLLIN }];
        Assert.Equal(1, PU.Poll(pfd, 30_000));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "data/key\0tok\0"), ReadMessage(PU, fd));
        // An error reply.
        Assert.Equal(Request(XsWire.XS_READ, 10, "nothing").Length, PU.Write(fd, Request(XsWire.XS_READ, 10, "nothing")));
        Assert.Equal((XsWire.XS_ERROR, 10u, "ENOENT\0"), ReadMessage(PU, fd));
        Assert.Equal(0, PU.Close(fd));
        Assert.Equal(0, Host.Xenstore.ConnectionCount);                 // closing the file closes the connection
    }

    [Fact]
    public void XS07_NonBlockingReadIsEagain_OversizedRequestIsE2bigOrEinval_CloseWakesABlockedReader()
    {
        int nb = Open(PU, Xenbus, Posix.O_RDWR | Posix.O_NONBLOCK);
        Assert.Equal(-Errno.EAGAIN, PU.Read(nb, new byte[16]));
        Span<PollFd> pfd = [new PollFd { Fd = nb, Events = Posix.POLLIN | Posix.POLLOUT | Posix.POLLRDNORM }];
        Assert.Equal(0, PU.Poll(pfd, 0));                                // Linux reports no POLLOUT, ever
        // Header and payload share one XENSTORE_PAYLOAD_MAX buffer (Linux 6.1): a header announcing more than
        // fits is E2BIG and dropped; a write longer than the room left is EINVAL and empties the buffer.
        var big = XsRawConnection.Message(XsWire.XS_WRITE, 1, 0, new byte[8]);
        BinaryPrimitives.WriteUInt32LittleEndian(big.AsSpan(12), (uint)(XsWire.XENSTORE_PAYLOAD_MAX - XsWire.HeaderSize + 1));
        Assert.Equal(-Errno.E2BIG, PU.Write(nb, big.AsSpan(0, XsWire.HeaderSize)));
        Assert.Equal(-Errno.EINVAL, PU.Write(nb, new byte[XsWire.XENSTORE_PAYLOAD_MAX + 1]));
        Assert.Equal(5, PU.Write(nb, new byte[5]));
        Assert.Equal(-Errno.EINVAL, PU.Write(nb, new byte[XsWire.XENSTORE_PAYLOAD_MAX - 4]));
        // The largest request that fits goes through (dom0's, so no node-size quota refuses the value).
        int d0 = Open(P0, Xenbus, Posix.O_RDWR | Posix.O_NONBLOCK);
        string key = "/local/domain/0/data/" + new string('k', 40);
        var value = new byte[XsWire.XENSTORE_PAYLOAD_MAX - XsWire.HeaderSize - key.Length - 1];
        var largest = XsRawConnection.Message(XsWire.XS_WRITE, 2, 0, [.. Encoding.UTF8.GetBytes(key + "\0"), .. value]);
        Assert.Equal(XsWire.XENSTORE_PAYLOAD_MAX, largest.Length);
        Assert.Equal(largest.Length, P0.Write(d0, largest));
        Span<PollFd> p0fd = [new PollFd { Fd = d0, Events = Posix.POLLIN | Posix.POLLOUT | Posix.POLLRDNORM }];
        Assert.Equal(1, P0.Poll(p0fd, 30_000));
        Assert.Equal(Posix.POLLIN | Posix.POLLRDNORM, p0fd[0].REvents);
        Assert.Equal((XsWire.XS_WRITE, 2u, "OK\0"), ReadMessage(P0, d0));
        Assert.Equal(value.Length, Host.Xenstore.Read(key)!.Length);
        Assert.Equal(0, P0.Close(d0));
        Assert.Equal(0, PU.Close(nb));

        int fd = Open(P0, Xenbus);
        long got = long.MinValue;
        var reader = new Thread(() => got = P0.Read(fd, new byte[64]));
        reader.Start();
        Assert.True(SpinWait.SpinUntil(() => reader.ThreadState.HasFlag(ThreadState.WaitSleepJoin), TimeSpan.FromSeconds(30)));
        Assert.Equal(0, P0.Close(fd));
        Assert.True(reader.Join(TimeSpan.FromSeconds(30)), "the blocked read did not end with the file");
        Assert.Equal(0, got);                                            // end of file
    }

    /// <summary>Linux sends a request's payload from the file's one buffer after write(2) returned, so a request
    /// written before the previous reply was read may go out with the newer one's bytes. The emulated device
    /// answers inside write(2) and cannot lose that race; it counts such writes and the after-test check
    /// reports them, so a client that pipelines on xenbus fails its tests here as it would fail on Linux.</summary>
    [Fact]
    public void XS07_RequestWrittenBeforeThePreviousReplyWasRead_IsReportedByTheAfterTestCheck()
    {
        int fd = Open(PU, Xenbus);
        var driver = DomU.Xenbus;
        Assert.Equal(Request(XsWire.XS_WRITE, 1, "data/a", "1").Length, PU.Write(fd, Request(XsWire.XS_WRITE, 1, "data/a", "1")));
        Assert.Equal((XsWire.XS_WRITE, 1u, "OK\0"), ReadMessage(PU, fd));
        // A watch event waiting unread does not count: only replies do.
        Assert.Equal(Request(XsWire.XS_WATCH, 2, "data", "t").Length, PU.Write(fd, Request(XsWire.XS_WATCH, 2, "data", "t")));
        Assert.Equal((XsWire.XS_WATCH, 2u, "OK\0"), ReadMessage(PU, fd));
        Assert.Equal(Request(XsWire.XS_READ, 3, "data/a").Length, PU.Write(fd, Request(XsWire.XS_READ, 3, "data/a")));
        Assert.Equal(0, driver.PipelinedWrites);
        // The read's reply is still unread: this write is the hazard.
        Assert.Equal(Request(XsWire.XS_READ, 4, "data/a").Length, PU.Write(fd, Request(XsWire.XS_READ, 4, "data/a")));
        Assert.Equal(1, driver.PipelinedWrites);
        Assert.Contains(Host.CheckLeaks(), l => l.Contains("written before the previous reply was read", StringComparison.Ordinal));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "data\0t\0"), ReadMessage(PU, fd));
        Assert.Equal((XsWire.XS_READ, 3u, "1\0"), ReadMessage(PU, fd));
        Assert.Equal((XsWire.XS_READ, 4u, "1\0"), ReadMessage(PU, fd));
        Assert.Equal(0, PU.Close(fd));
        driver.ForgivePipelinedWrites();
    }

    [Fact]
    public void XS07_Dom0AndAGuestEachSpeakForTheirOwnDomain()
    {
        int g = Open(PU, Xenbus);
        int z = Open(P0, Xenbus);
        var read = Request(XsWire.XS_READ, 1, "/tool");
        Assert.Equal(read.Length, PU.Write(g, read));
        Assert.Equal((XsWire.XS_ERROR, 1u, "EACCES\0"), ReadMessage(PU, g));   // dom0-only node
        var mkdir = Request(XsWire.XS_MKDIR, 2, "/tool");
        Assert.Equal(mkdir.Length, P0.Write(z, mkdir));
        Assert.Equal((XsWire.XS_MKDIR, 2u, "OK\0"), ReadMessage(P0, z));
        Assert.Equal(0, PU.Close(g));
        Assert.Equal(0, P0.Close(z));
    }
}
