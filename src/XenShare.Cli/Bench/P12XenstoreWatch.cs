using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Xenstore;

namespace XenShare.Cli.Bench;

/// <summary>
/// P12: a xenstore write on one connection until the watch event reaches another connection, both over
/// the Unix socket of the emulated xenstored (<see cref="XenstoreSocketServer"/>, what <c>xenshare
/// xenstored</c> serves), vs a raw Unix-socket round trip (an echo of a message of the same size) measured
/// in the same run. Target: ratio &lt;= 2.
/// </summary>
internal sealed class P12XenstoreWatch : BenchTarget
{
    public override string Id => "P12";

    public override string Title => "xenstore write + watch event on another connection vs a Unix-socket round trip";

    private static byte[] Message(uint type, uint req, string payload)
    {
        var p = Encoding.ASCII.GetBytes(payload);
        var m = new byte[XsWire.HeaderSize + p.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(m, type);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), req);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(12), (uint)p.Length);
        p.CopyTo(m, XsWire.HeaderSize);
        return m;
    }

    /// <summary>Reads whole messages from a socket with as few receives as the data allows, keeping what
    /// arrived beyond the current message.</summary>
    private sealed class MessageReader(Socket socket)
    {
        private readonly byte[] _buffer = new byte[4 * (XsWire.HeaderSize + XsWire.XENSTORE_PAYLOAD_MAX)];
        private int _have;

        /// <summary>The next message's type.</summary>
        public uint Next()
        {
            while (true)
            {
                if (_have >= XsWire.HeaderSize)
                {
                    int size = XsWire.HeaderSize + (int)BinaryPrimitives.ReadUInt32LittleEndian(_buffer.AsSpan(12));
                    if (_have >= size)
                    {
                        uint type = BinaryPrimitives.ReadUInt32LittleEndian(_buffer);
                        _buffer.AsSpan(size, _have - size).CopyTo(_buffer);
                        _have -= size;
                        return type;
                    }
                }
                int n = socket.Receive(_buffer.AsSpan(_have));
                if (n == 0) throw new IOException("connection closed");
                _have += n;
            }
        }
    }

    private static void Fill(Socket s, Span<byte> into)
    {
        int got = 0;
        while (got < into.Length)
        {
            int n = s.Receive(into[got..]);
            if (n == 0) throw new IOException("connection closed");
            got += n;
        }
    }

    private static Socket Connect(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        return s;
    }

    public override BenchRow Run(BenchOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string dir = Directory.CreateTempSubdirectory("xenshare-p12-").FullName;
        try
        {
            using var host = new EmulatedHost(16384);
            using var server = XenstoreSocketServer.Start(host.Xenstore, Path.Combine(dir, "xenstored"));
            using var writer = Connect(server.Path);
            using var watcher = Connect(server.Path);
            var fromWriter = new MessageReader(writer);
            var fromWatcher = new MessageReader(watcher);
            watcher.Send(Message(XsWire.XS_WATCH, 1, "/tool/bench\0tok\0"));
            if (fromWatcher.Next() != XsWire.XS_WATCH || fromWatcher.Next() != XsWire.XS_WATCH_EVENT)
                throw new InvalidOperationException("P12: the watch was not registered");
            var write = Message(XsWire.XS_WRITE, 2, "/tool/bench/key\0value");

            // The baseline: an echo server on another Unix socket, same message size.
            string echoPath = Path.Combine(dir, "echo");
            using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            listener.Bind(new UnixDomainSocketEndPoint(echoPath));
            listener.Listen(1);
            using var echoClient = Connect(echoPath);
            using var echoServer = listener.Accept();
            var echo = new Thread(() =>
            {
                var b = new byte[write.Length];
                try
                {
                    while (true)
                    {
                        Fill(echoServer, b);
                        echoServer.Send(b);
                    }
                }
                catch (IOException) { }
                catch (SocketException) { }
                catch (ObjectDisposedException) { }
            }) { IsBackground = true, Name = "P12 echo" };
            echo.Start();
            var echoBuffer = new byte[write.Length];

            int rounds = options.Scale(2000);
            var (measured, baseline) = Measure.Interleaved(
                options,
                () =>
                {
                    for (int i = 0; i < rounds; i++)
                    {
                        writer.Send(write);
                        if (fromWatcher.Next() != XsWire.XS_WATCH_EVENT) throw new InvalidOperationException("P12: expected a watch event");
                        if (fromWriter.Next() != XsWire.XS_WRITE) throw new InvalidOperationException("P12: expected the write's reply");
                    }
                },
                () =>
                {
                    for (int i = 0; i < rounds; i++)
                    {
                        echoClient.Send(write);
                        Fill(echoClient, echoBuffer);
                    }
                });
            echoClient.Shutdown(SocketShutdown.Both);
            echo.Join(TimeSpan.FromSeconds(10));
            double us = measured * 1e6 / rounds, baseUs = baseline * 1e6 / rounds;
            return BenchRow.Create(
                Id,
                "xenstore WRITE on one socket connection until the watch event arrives on another (emulated xenstored, Unix socket), vs a raw Unix-socket echo round trip of the same message",
                us,
                "us",
                baseUs,
                "us round trip",
                BenchGoal.AtMostRatio(2));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
