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

        // Two requests in one write; a watch: its reply and its first event come in order.
        var two = Request(XsWire.XS_READ, 8, "data/key").Concat(Request(XsWire.XS_WATCH, 9, "data", "tok")).ToArray();
        Assert.Equal(two.Length, PU.Write(fd, two));
        Assert.Equal((XsWire.XS_READ, 8u, "value"), ReadMessage(PU, fd));
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
    public void XS07_NonBlockingReadIsEagain_OversizedRequestIsEinval_CloseWakesABlockedReader()
    {
        int nb = Open(PU, Xenbus, Posix.O_RDWR | Posix.O_NONBLOCK);
        Assert.Equal(-Errno.EAGAIN, PU.Read(nb, new byte[16]));
        var big = XsRawConnection.Message(XsWire.XS_WRITE, 1, 0, new byte[8]);
        BinaryPrimitives.WriteUInt32LittleEndian(big.AsSpan(12), XsWire.XENSTORE_PAYLOAD_MAX + 1);
        Assert.Equal(-Errno.EINVAL, PU.Write(nb, big.AsSpan(0, XsWire.HeaderSize)));
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
