using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Threading.Channels;
using XenShare.Abi;

namespace XenShare.Tests.Xenstore;

/// <summary>A request as the fake daemon received it.</summary>
internal sealed record XsRequest(uint Type, uint ReqId, uint TxId, byte[] Payload)
{
    public string PayloadText => Encoding.UTF8.GetString(Payload);
}

/// <summary>
/// A small in-memory xenstore daemon speaking the xs_wire protocol, written from the protocol description
/// for the client's tests: a tree with values and permission lists, watches (fired on registration and
/// on changes at or below the watched path), transactions on a snapshot of the tree (a commit fails with
/// EAGAIN when the tree changed meanwhile, or while <see cref="FailCommits"/> is positive), and hooks to
/// stall requests and inject hostile bytes. Each message is handled under one lock, so replies and
/// events leave in a single order.
/// </summary>
internal sealed class FakeXenstored
{
    private readonly Lock _lock = new();
    private readonly List<Connection> _connections = [];
    private readonly Dictionary<uint, Transaction> _transactions = [];
    private readonly HashSet<ushort> _introduced = [0];
    private readonly Channel<Stalled> _stalled = Channel.CreateUnbounded<Stalled>();
    private readonly List<Stalled> _heldBack = [];
    private Dictionary<string, Node> _tree = new(StringComparer.Ordinal) { ["/"] = new Node([], ["n0"]) };
    private long _generation;
    private uint _lastTx;

    /// <summary>Every request received, in order.</summary>
    public ConcurrentQueue<XsRequest> Requests { get; } = new();

    /// <summary>Paths whose XS_READ gets no reply until <see cref="ReleaseStalled"/>.</summary>
    public ConcurrentDictionary<string, bool> StallReads { get; } = new(StringComparer.Ordinal);

    /// <summary>How many of the next commits answer EAGAIN regardless of conflicts.</summary>
    public int FailCommits { get; set; }

    /// <summary>Whether XS_WATCH fires its first event before its OK reply (xenstored acks first; a client
    /// must cope with both orders).</summary>
    public bool WatchEventBeforeReply { get; set; }

    /// <summary>The domain whose home path relative paths resolve against.</summary>
    public ushort HomeDomain { get; set; } = 1;

    public Connection Attach(Action<byte[]> send)
    {
        var connection = new Connection(send);
        lock (_lock) _connections.Add(connection);
        return connection;
    }

    public void Detach(Connection connection)
    {
        lock (_lock) _connections.Remove(connection);
    }

    /// <summary>The next request stalled by <see cref="StallReads"/>.</summary>
    public Task<Stalled> NextStalledAsync() => _stalled.Reader.ReadAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));

    /// <summary>Answers the stalled reads now.</summary>
    public void ReleaseStalled()
    {
        lock (_lock)
        {
            foreach (var s in _heldBack)
                if (Value(s.Path) is { } node) s.Connection.Send(XsWire.XS_READ, s.ReqId, 0, node.Value);
                else s.Connection.Send(XsWire.XS_ERROR, s.ReqId, 0, "ENOENT\0"u8.ToArray());
            _heldBack.Clear();
        }
    }

    public string? ValueOf(string path)
    {
        lock (_lock) return Value(path) is { } node ? Encoding.UTF8.GetString(node.Value) : null;
    }

    private Node? Value(string path) => _tree.GetValueOrDefault(path);

    /// <summary>Handles exactly one whole message from <paramref name="connection"/>.</summary>
    public void Handle(Connection connection, ReadOnlySpan<byte> message)
    {
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(message);
        uint reqId = BinaryPrimitives.ReadUInt32LittleEndian(message[4..]);
        uint txId = BinaryPrimitives.ReadUInt32LittleEndian(message[8..]);
        uint len = BinaryPrimitives.ReadUInt32LittleEndian(message[12..]);
        if (len > XsWire.XENSTORE_PAYLOAD_MAX || message.Length != 16 + len)
            throw new InvalidDataException($"malformed request: len {len}, message {message.Length} bytes");
        var payload = message[16..].ToArray();
        Requests.Enqueue(new XsRequest(type, reqId, txId, payload));
        lock (_lock)
        {
            byte[]? reply;
            string? error = null;
            try
            {
                reply = Execute(connection, type, reqId, txId, payload, out error);
            }
            catch (KeyNotFoundException)
            {
                reply = null;
                error = "ENOENT";
            }
            if (error is not null) connection.Send(XsWire.XS_ERROR, reqId, txId, Encoding.ASCII.GetBytes(error + "\0"));
            else if (reply is not null) connection.Send(type, reqId, txId, reply);
        }
    }

    private static readonly byte[] Ok = "OK\0"u8.ToArray();

    private byte[]? Execute(Connection connection, uint type, uint reqId, uint txId, byte[] payload, out string? error)
    {
        error = null;
        var parts = Split(payload);
        Transaction? tx = null;
        if (txId != 0 && !_transactions.TryGetValue(txId, out tx))
        {
            error = "ENOENT";
            return null;
        }
        var tree = tx?.Tree ?? _tree;
        switch (type)
        {
            case XsWire.XS_READ:
            {
                string path = Resolve(parts[0]);
                if (StallReads.ContainsKey(path))
                {
                    var stalled = new Stalled(connection, reqId, path);
                    _heldBack.Add(stalled);
                    _stalled.Writer.TryWrite(stalled);
                    return null;
                }
                if (!tree.TryGetValue(path, out var node)) { error = "ENOENT"; return null; }
                return node.Value;
            }
            case XsWire.XS_WRITE:
            {
                int nul = Array.IndexOf(payload, (byte)0);
                if (nul < 0) { error = "EINVAL"; return null; }
                string path = Resolve(Encoding.UTF8.GetString(payload, 0, nul));
                Create(tree, path);
                tree[path] = tree[path] with { Value = payload[(nul + 1)..] };
                Changed(tx, path);
                return Ok;
            }
            case XsWire.XS_MKDIR:
            {
                string path = Resolve(parts[0]);
                if (!tree.ContainsKey(path))
                {
                    Create(tree, path);
                    Changed(tx, path);
                }
                return Ok;
            }
            case XsWire.XS_RM:
            {
                string path = Resolve(parts[0]);
                if (!tree.ContainsKey(path)) { error = "ENOENT"; return null; }
                foreach (var key in tree.Keys.Where(k => k == path || k.StartsWith(path + "/", StringComparison.Ordinal)).ToList())
                    tree.Remove(key);
                Changed(tx, path);
                return Ok;
            }
            case XsWire.XS_DIRECTORY:
            {
                string path = Resolve(parts[0]);
                if (!tree.ContainsKey(path)) { error = "ENOENT"; return null; }
                var names = tree.Keys.Where(k => k != "/" && Parent(k) == path).Select(k => k[(k.LastIndexOf('/') + 1)..]).Order(StringComparer.Ordinal);
                return Join(names);
            }
            case XsWire.XS_GET_PERMS:
            {
                string path = Resolve(parts[0]);
                if (!tree.TryGetValue(path, out var node)) { error = "ENOENT"; return null; }
                return Join(node.Perms);
            }
            case XsWire.XS_SET_PERMS:
            {
                string path = Resolve(parts[0]);
                if (!tree.TryGetValue(path, out var node)) { error = "ENOENT"; return null; }
                var perms = parts.Skip(1).Where(p => p.Length > 0).ToArray();
                if (perms.Length == 0 || perms.Any(p => "nrwb".IndexOf(p[0], StringComparison.Ordinal) < 0)) { error = "EINVAL"; return null; }
                tree[path] = node with { Perms = perms };
                Changed(tx, path);
                return Ok;
            }
            case XsWire.XS_WATCH:
            {
                string path = parts[0], token = parts[1];
                if (connection.Watches.Contains((path, token))) { error = "EEXIST"; return null; }
                connection.Watches.Add((path, token));
                // The first event fires at once (xenstore.txt); the order against the OK is a knob.
                if (WatchEventBeforeReply) connection.SendEvent(path, token);
                connection.Send(type, reqId, txId, Ok);
                if (!WatchEventBeforeReply) connection.SendEvent(path, token);
                return null;
            }
            case XsWire.XS_UNWATCH:
                if (!connection.Watches.Remove((parts[0], parts[1]))) { error = "ENOENT"; return null; }
                return Ok;
            case XsWire.XS_TRANSACTION_START:
            {
                uint id = ++_lastTx;
                _transactions[id] = new Transaction(new Dictionary<string, Node>(_tree, StringComparer.Ordinal), _generation);
                return Encoding.ASCII.GetBytes(id.ToString(CultureInfo.InvariantCulture) + "\0");
            }
            case XsWire.XS_TRANSACTION_END:
            {
                if (tx is null) { error = "EINVAL"; return null; }
                _transactions.Remove(txId);
                if (parts[0] == "F") return Ok;
                if (parts[0] != "T") { error = "EINVAL"; return null; }
                if (FailCommits > 0)
                {
                    FailCommits--;
                    error = "EAGAIN";
                    return null;
                }
                if (tx.Generation != _generation) { error = "EAGAIN"; return null; }
                _tree = tx.Tree;
                _generation++;
                foreach (var path in tx.ChangedPaths) FireWatches(path);
                return Ok;
            }
            case XsWire.XS_GET_DOMAIN_PATH:
                return Encoding.ASCII.GetBytes("/local/domain/" + parts[0] + "\0");
            case XsWire.XS_IS_DOMAIN_INTRODUCED:
                return _introduced.Contains(ushort.Parse(parts[0], CultureInfo.InvariantCulture)) ? "T\0"u8.ToArray() : "F\0"u8.ToArray();
            case XsWire.XS_INTRODUCE:
                _introduced.Add(ushort.Parse(parts[0], CultureInfo.InvariantCulture));
                return Ok;
            case XsWire.XS_RELEASE:
                if (!_introduced.Remove(ushort.Parse(parts[0], CultureInfo.InvariantCulture))) { error = "ENOENT"; return null; }
                return Ok;
            default:
                error = "ENOSYS";
                return null;
        }
    }

    private void Changed(Transaction? tx, string path)
    {
        if (tx is not null)
        {
            tx.ChangedPaths.Add(path);
            return;
        }
        _generation++;
        FireWatches(path);
    }

    private void FireWatches(string path)
    {
        foreach (var connection in _connections)
            foreach (var (watched, token) in connection.Watches)
                if (path == watched || path.StartsWith(watched.TrimEnd('/') + "/", StringComparison.Ordinal))
                    connection.SendEvent(path, token);
    }

    private string Resolve(string path) =>
        path.StartsWith('/') || path.StartsWith('@') ? path : $"/local/domain/{HomeDomain}/{path}";

    private static string Parent(string path)
    {
        int slash = path.LastIndexOf('/');
        return slash <= 0 ? "/" : path[..slash];
    }

    private static void Create(Dictionary<string, Node> tree, string path)
    {
        if (tree.ContainsKey(path)) return;
        string parent = Parent(path);
        Create(tree, parent);
        // A new node inherits its parent's permissions, as in xenstored.
        tree[path] = new Node([], tree[parent].Perms);
    }

    private static List<string> Split(byte[] payload)
    {
        var result = Encoding.UTF8.GetString(payload).Split('\0').ToList();
        if (result.Count > 1 && result[^1].Length == 0) result.RemoveAt(result.Count - 1);
        return result;
    }

    private static byte[] Join(IEnumerable<string> strings)
    {
        var sb = new StringBuilder();
        foreach (var s in strings) sb.Append(s).Append('\0');
        return Encoding.UTF8.GetBytes(sb.ToString());
    }

    private sealed record Node(byte[] Value, string[] Perms);

    private sealed record Transaction(Dictionary<string, Node> Tree, long Generation)
    {
        public List<string> ChangedPaths { get; } = [];
    }

    /// <summary>A read the daemon holds back.</summary>
    public sealed record Stalled(Connection Connection, uint ReqId, string Path);

    /// <summary>One client connection: its watches and its way back to the client.</summary>
    public sealed class Connection(Action<byte[]> send)
    {
        public List<(string Path, string Token)> Watches { get; } = [];

        public void Send(uint type, uint reqId, uint txId, byte[] payload)
        {
            var message = new byte[16 + payload.Length];
            BinaryPrimitives.WriteUInt32LittleEndian(message, type);
            BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(4), reqId);
            BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(8), txId);
            BinaryPrimitives.WriteUInt32LittleEndian(message.AsSpan(12), (uint)payload.Length);
            payload.CopyTo(message, 16);
            send(message);
        }

        public void SendEvent(string path, string token) =>
            Send(XsWire.XS_WATCH_EVENT, 0, 0, Encoding.UTF8.GetBytes(path + "\0" + token + "\0"));

        /// <summary>Bytes straight onto the wire (hostile replies).</summary>
        public void SendRaw(byte[] bytes) => send(bytes);
    }
}
