using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using XenShare.Abi;
using XenShare.Emulation.Xenstore;

namespace XenShare.Tests.Xenstore;

/// <summary>
/// XS07 on the Unix socket of <see cref="XenstoreSocketServer"/> at the byte level: what one client's
/// requests produce reaches every client whole and, per client, in the daemon's order (the requester's
/// replies are written first, other clients' events after the daemon's lock is released; changes made
/// outside any client are written at once).
/// </summary>
public sealed class XenstoreSocketServerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenshare-xss-").FullName;
    private readonly XenstoreDaemon _daemon = new();
    private readonly XenstoreSocketServer _server;

    public XenstoreSocketServerTests()
    {
        _server = XenstoreSocketServer.Start(_daemon, Path.Combine(_dir, "socket"));
    }

    public void Dispose()
    {
        _server.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private Socket Connect()
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified) { ReceiveTimeout = 60_000 };
        s.Connect(new UnixDomainSocketEndPoint(_server.Path));
        return s;
    }

    private static byte[] Message(uint type, uint reqId, string payload)
    {
        var p = Encoding.ASCII.GetBytes(payload);
        var m = new byte[XsWire.HeaderSize + p.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(m, type);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), reqId);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(12), (uint)p.Length);
        p.CopyTo(m, XsWire.HeaderSize);
        return m;
    }

    /// <summary>The next whole message: type, req_id and payload as text (waits up to the socket's
    /// receive timeout).</summary>
    private static (uint Type, uint ReqId, string Payload) Next(Socket s)
    {
        var header = new byte[XsWire.HeaderSize];
        Fill(s, header);
        var payload = new byte[BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(12))];
        Fill(s, payload);
        return (BinaryPrimitives.ReadUInt32LittleEndian(header), BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(4)), Encoding.ASCII.GetString(payload));
    }

    private static void Fill(Socket s, byte[] into)
    {
        int got = 0;
        while (got < into.Length)
        {
            int n = s.Receive(into.AsSpan(got));
            if (n == 0) throw new IOException("connection closed");
            got += n;
        }
    }

    [Fact]
    public void XS07_PipelinedWrites_RepliesInOrder_EventsOnAnotherConnectionInOrder_OwnEventBeforeItsReply()
    {
        using var writer = Connect();
        using var watcher = Connect();
        watcher.Send(Message(XsWire.XS_WATCH, 1, "/tool/t\0w\0"));
        Assert.Equal((XsWire.XS_WATCH, 1u, "OK\0"), Next(watcher));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/t\0w\0"), Next(watcher));   // XS05: fires at registration
        writer.Send(Message(XsWire.XS_WATCH, 1, "/tool/t/self\0me\0"));
        Assert.Equal((XsWire.XS_WATCH, 1u, "OK\0"), Next(writer));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/t/self\0me\0"), Next(writer));

        // Three requests in one send: handled in order, each reply and event whole.
        writer.Send([.. Message(XsWire.XS_WRITE, 2, "/tool/t/a\0x"), .. Message(XsWire.XS_WRITE, 3, "/tool/t/self\0y"), .. Message(XsWire.XS_READ, 4, "/tool/t/a\0")]);
        Assert.Equal((XsWire.XS_WRITE, 2u, "OK\0"), Next(writer));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/t/self\0me\0"), Next(writer));   // its own watch fired before the reply, as xenstored orders them
        Assert.Equal((XsWire.XS_WRITE, 3u, "OK\0"), Next(writer));
        Assert.Equal((XsWire.XS_READ, 4u, "x"), Next(writer));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/t/a\0w\0"), Next(watcher));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/t/self\0w\0"), Next(watcher));
        Assert.Equal(0, watcher.Available);   // nothing else: the read fired nothing
    }

    [Fact]
    public void XS07_AChangeMadeOutsideAnyClient_ReachesASocketWatcher()
    {
        using var watcher = Connect();
        watcher.Send(Message(XsWire.XS_WATCH, 7, "/tool/ts\0tok\0"));
        Assert.Equal((XsWire.XS_WATCH, 7u, "OK\0"), Next(watcher));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/ts\0tok\0"), Next(watcher));
        Assert.Equal(0, _daemon.Write("/tool/ts/k", "v"));   // the toolstack, on this thread
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/ts/k\0tok\0"), Next(watcher));
    }

    [Fact]
    public void XS01_AProtocolErrorEndsThatClientOnly()
    {
        using var bad = Connect();
        using var good = Connect();
        good.Send(Message(XsWire.XS_WATCH, 1, "/tool/p\0g\0"));
        Assert.Equal((XsWire.XS_WATCH, 1u, "OK\0"), Next(good));
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/p\0g\0"), Next(good));
        var oversized = new byte[XsWire.HeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(oversized, XsWire.XS_READ);
        BinaryPrimitives.WriteUInt32LittleEndian(oversized.AsSpan(12), XsWire.XENSTORE_PAYLOAD_MAX + 1);
        bad.Send([.. Message(XsWire.XS_WRITE, 2, "/tool/p/k\0v"), .. oversized]);
        Assert.Equal((XsWire.XS_WRITE, 2u, "OK\0"), Next(bad));                       // what came before the error is answered
        Assert.Equal(0, bad.Receive(new byte[1]));                                    // then the server closes the connection
        Assert.Equal((XsWire.XS_WATCH_EVENT, 0u, "/tool/p/k\0g\0"), Next(good));
        good.Send(Message(XsWire.XS_READ, 3, "/tool/p/k\0"));
        Assert.Equal((XsWire.XS_READ, 3u, "v"), Next(good));
    }
}
