using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using XenShare.Abi;
using XenShare.Emulation.Xenstore;

namespace XenShare.Tests.Xenstore;

/// <summary>A raw connection to the emulated xenstore daemon for tests: builds requests byte by byte and
/// splits what comes back into replies (by req_id) and watch events.</summary>
internal sealed class XsRawConnection : IDisposable
{
    private readonly ConcurrentQueue<byte[]> _incoming = new();
    private uint _nextReq = 1;

    public XsRawConnection(XenstoreDaemon daemon, ushort domain)
    {
        Connection = daemon.Connect(new DomainId(domain), m => _incoming.Enqueue(m.ToArray()));
    }

    public XenstoreConnection Connection { get; }

    public List<(string Path, string Token)> Events { get; } = new();

    public static byte[] Message(uint type, uint reqId, uint txId, byte[] payload)
    {
        var m = new byte[XsWire.HeaderSize + payload.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(m, type);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(4), reqId);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(8), txId);
        BinaryPrimitives.WriteUInt32LittleEndian(m.AsSpan(12), (uint)payload.Length);
        payload.CopyTo(m, XsWire.HeaderSize);
        return m;
    }

    public static byte[] Strings(params string[] args) => Encoding.UTF8.GetBytes(string.Concat(args.Select(a => a + "\0")));

    /// <summary>Sends a request whose payload is NUL-terminated strings; returns the reply's type, tx_id and
    /// payload (events that came before it go to <see cref="Events"/>).</summary>
    public (uint Type, uint TxId, byte[] Payload) Request(uint type, uint txId, byte[] payload)
    {
        uint req = _nextReq++;
        Assert.Equal(0, Connection.Submit(Message(type, req, txId, payload)));
        while (_incoming.TryDequeue(out var m))
        {
            uint t = BinaryPrimitives.ReadUInt32LittleEndian(m);
            uint r = BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(4));
            uint tx = BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(8));
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(m.AsSpan(12));
            Assert.Equal(m.Length - XsWire.HeaderSize, (int)len);
            var body = m[XsWire.HeaderSize..];
            if (t == XsWire.XS_WATCH_EVENT)
            {
                Assert.Equal(0u, r);
                var parts = Encoding.UTF8.GetString(body).Split('\0');
                Events.Add((parts[0], parts[1]));
                continue;
            }
            Assert.Equal(req, r);   // XS01: the reply echoes req_id
            return (t, tx, body);
        }
        throw new Xunit.Sdk.XunitException($"no reply to request {req} (type {type})");
    }

    public (uint Type, uint TxId, byte[] Payload) Request(uint type, params string[] args) => Request(type, 0, Strings(args));

    /// <summary>Events delivered since the last call (after draining non-reply messages).</summary>
    public List<(string Path, string Token)> TakeEvents()
    {
        while (_incoming.TryDequeue(out var m))
        {
            Assert.Equal(XsWire.XS_WATCH_EVENT, BinaryPrimitives.ReadUInt32LittleEndian(m));
            var parts = Encoding.UTF8.GetString(m.AsSpan(XsWire.HeaderSize)).Split('\0');
            Events.Add((parts[0], parts[1]));
        }
        var all = Events.ToList();
        Events.Clear();
        return all;
    }

    public string Ok(uint type, params string[] args)
    {
        var (t, _, p) = Request(type, args);
        Assert.True(t == type, $"{type} {string.Join(",", args)}: got {t} {Encoding.UTF8.GetString(p)}");
        return Encoding.UTF8.GetString(p);
    }

    public string Error(uint type, params string[] args)
    {
        var (t, _, p) = Request(type, args);
        Assert.True(t == XsWire.XS_ERROR, $"{type} {string.Join(",", args)}: expected an error, got type {t} '{Encoding.UTF8.GetString(p)}'");
        return Encoding.UTF8.GetString(p).TrimEnd('\0');
    }

    public string Write(string path, string value, uint txId = 0)
    {
        var (t, _, p) = Request(XsWire.XS_WRITE, txId, Encoding.UTF8.GetBytes(path + "\0" + value));
        return t == XsWire.XS_ERROR ? Encoding.UTF8.GetString(p).TrimEnd('\0') : Encoding.UTF8.GetString(p);
    }

    public string Read(string path, uint txId = 0)
    {
        var (t, _, p) = Request(XsWire.XS_READ, txId, Strings(path));
        return t == XsWire.XS_ERROR ? "error:" + Encoding.UTF8.GetString(p).TrimEnd('\0') : Encoding.UTF8.GetString(p);
    }

    public void Dispose() => Connection.Dispose();
}
