using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Globalization;
using System.Text;
using XenShare.Abi;

namespace XenShare.Emulation.Xenstore;

/// <summary>
/// The emulated host's xenstore daemon (dom0's xenstored): a tree of nodes with values and permissions,
/// watches, transactions and per-domain quotas, speaking the wire protocol of <c>xen/io/xs_wire.h</c>
/// (XS01-XS08). Clients connect with <see cref="Connect"/> (the Unix socket of <c>xenshare xenstored</c>,
/// or a guest's <c>/dev/xen/xenbus</c>); the emulated toolstack introduces and releases domains and
/// writes device directories with the privileged helpers (<see cref="Write"/>, <see cref="Remove"/>).
/// </summary>
/// <remarks>
/// Lock: <c>_lock</c> guards the tree root, the ownership counts, every connection's watches and
/// transactions, and the introduced set; every request runs under it, so requests are serialised as in
/// xenstored, and replies and watch events are queued (the connections' delivery callbacks, which only
/// queue) under it, in order. It is a leaf for the rest of the emulator: nothing else is taken inside.
/// Nodes are immutable (<see cref="XsNode"/>): a transaction keeps the root it started from.
/// </remarks>
public sealed class XenstoreDaemon
{
    /// <summary>A transaction: the snapshot root it started from, its own view, what it touched (path to the
    /// generation it had in the snapshot, -1 for absent) and the changes to replay at commit (XS06).</summary>
    internal sealed class Transaction
    {
        public required XsNode Snapshot;
        public required View View;
        public Dictionary<string, long> Accessed { get; } = new(StringComparer.Ordinal);
        public List<Func<View, int>> Replay { get; } = new();
    }

    /// <summary>A root and its per-owner node counts: the live store, or a transaction's private copy.
    /// Changes made through it are collected for the watches.</summary>
    internal sealed class View
    {
        public required XsNode Root;
        public required Dictionary<ushort, int> Owned;
        public List<(string Path, ImmutableArray<XsPerm> Perms, bool Removed)> Changes { get; } = new();
    }

    private const string LocalDomain = "/local/domain";
    private static readonly byte[] Ok = "OK\0"u8.ToArray();
    private static readonly ImmutableArray<XsPerm> Dom0Only = [new XsPerm('n', 0)];
    private static readonly IReadOnlyList<string> NoArgs = [];
    private static readonly SearchValues<char> PathChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-/_@");

    private readonly object _lock = new();
    private readonly List<XenstoreConnection> _connections = new();
    private readonly HashSet<ushort> _introduced = new();
    private View _live;
    private long _generation;

    /// <summary>Creates a store holding <c>/</c>, <c>/local</c> and <c>/local/domain</c>, owned by dom0.</summary>
    public XenstoreDaemon(XenstoreOptions? options = null)
    {
        Options = options ?? new XenstoreOptions();
        var root = new XsNode([], Dom0Only, XsNode.NoChildren, 0);
        _live = new View { Root = root, Owned = new Dictionary<ushort, int> { [0] = 1 } };
        foreach (var p in new[] { "/local", LocalDomain, "/tool" }) Apply(p, static (d, v, p) => d.MkdirIn(v, 0, p));
        _live.Changes.Clear();
    }

    /// <summary>Quotas and limits.</summary>
    public XenstoreOptions Options { get; }

    /// <summary>Open connections (leak checks).</summary>
    public int ConnectionCount { get { lock (_lock) return _connections.Count; } }

    /// <summary>Nodes in the store.</summary>
    public int NodeCount { get { lock (_lock) return _live.Owned.Values.Sum(); } }

    /// <summary>Opens a connection for <paramref name="domain"/>; replies and watch events are handed to
    /// <paramref name="deliver"/> (one whole message a call, in order, under the daemon's lock: it must only
    /// queue them).</summary>
    public XenstoreConnection Connect(DomainId domain, Action<ReadOnlyMemory<byte>> deliver)
    {
        ArgumentNullException.ThrowIfNull(deliver);
        var c = new XenstoreConnection(this, domain, deliver);
        lock (_lock) _connections.Add(c);
        return c;
    }

    internal void Close(XenstoreConnection c)
    {
        lock (_lock) CloseLocked(c);
    }

    private void CloseLocked(XenstoreConnection c)
    {
        if (c.IsClosed) return;
        c.IsClosed = true;
        c.Watches.Clear();
        c.Transactions.Clear();
        _connections.Remove(c);
    }

    // ------------------------------------------------------------------ toolstack (privileged, no connection)

    /// <summary>XS08: the toolstack introduces a domain (after writing its home, as libxl does: the daemon
    /// itself creates no node): it counts as introduced and <c>@introduceDomain</c> fires.</summary>
    public void IntroduceDomain(DomainId domain)
    {
        lock (_lock)
        {
            _introduced.Add(domain.Value);
            FireSpecial("@introduceDomain");
        }
    }

    /// <summary>XS08: the domain is gone: its connections lose their watches and transactions and are
    /// closed, <c>@releaseDomain</c> fires. Its nodes stay until the toolstack removes them.</summary>
    public void ReleaseDomain(DomainId domain)
    {
        lock (_lock)
        {
            foreach (var c in _connections.ToArray())
                if (c.Domain == domain) CloseLocked(c);
            _introduced.Remove(domain.Value);
            FireSpecial("@releaseDomain");
        }
    }

    /// <summary>Whether a domain is introduced.</summary>
    public bool IsIntroduced(DomainId domain)
    {
        lock (_lock) return _introduced.Contains(domain.Value);
    }

    /// <summary>A privileged write (the toolstack): creates missing parents, fires watches. 0 or -errno.</summary>
    public int Write(string path, string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        return Privileged(path, (d, v, p) => d.WriteIn(v, 0, p, Encoding.UTF8.GetBytes(value)));
    }

    /// <summary>A privileged permission change: <paramref name="perms"/> as on the wire ("n5", "r0", ...), the
    /// owner first. 0 or -errno.</summary>
    public int SetPermissions(string path, params string[] perms)
    {
        ArgumentNullException.ThrowIfNull(perms);
        var list = ImmutableArray.CreateBuilder<XsPerm>();
        foreach (var s in perms)
        {
            if (!XsPerm.TryParse(s, out var p)) return -Errno.EINVAL;
            list.Add(p);
        }
        if (list.Count == 0) return -Errno.EINVAL;
        var arr = list.ToImmutable();
        return Privileged(path, (d, v, p) => d.SetPermsIn(v, 0, p, arr));
    }

    /// <summary>A privileged removal of a subtree. 0 or -errno.</summary>
    public int Remove(string path) => Privileged(path, (d, v, p) => d.RmIn(v, 0, p));

    /// <summary>A privileged read: the value as UTF-8, or null when absent.</summary>
    public string? Read(string path)
    {
        lock (_lock)
        {
            if (!TryCanonical(0, path, false, out string abs, out _)) return null;
            return Lookup(_live.Root, abs) is { } n ? Encoding.UTF8.GetString(n.Value) : null;
        }
    }

    /// <summary>A privileged directory listing (empty when absent).</summary>
    public IReadOnlyList<string> Directory(string path)
    {
        lock (_lock)
        {
            if (!TryCanonical(0, path, false, out string abs, out _)) return [];
            return Lookup(_live.Root, abs) is { } n ? n.Children.Keys.ToArray() : [];
        }
    }

    private int Privileged(string path, Func<XenstoreDaemon, View, string, int> op)
    {
        ArgumentNullException.ThrowIfNull(path);
        lock (_lock)
        {
            if (!TryCanonical(0, path, false, out string abs, out _)) return -Errno.EINVAL;
            return Apply(abs, op);
        }
    }

    /// <summary>Runs one change on the live store and fires the watches it triggers.</summary>
    private int Apply(string abs, Func<XenstoreDaemon, View, string, int> op)
    {
        _live.Changes.Clear();
        int rc = op(this, _live, abs);
        FireChanges(_live);
        return rc;
    }

    // ------------------------------------------------------------------ requests

    internal int Submit(XenstoreConnection c, ReadOnlySpan<byte> message)
    {
        lock (_lock)
        {
            if (c.IsClosed) return -Errno.ENOTCONN;
            if (message.Length < XsWire.HeaderSize) { CloseLocked(c); return -Errno.EINVAL; }
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(message);
            uint reqId = BinaryPrimitives.ReadUInt32LittleEndian(message[4..]);
            uint txId = BinaryPrimitives.ReadUInt32LittleEndian(message[8..]);
            uint len = BinaryPrimitives.ReadUInt32LittleEndian(message[12..]);
            // XS01: a payload over the limit, or a length that does not match, is a protocol error.
            if (len > XsWire.XENSTORE_PAYLOAD_MAX || message.Length != XsWire.HeaderSize + (int)len) { CloseLocked(c); return -Errno.EINVAL; }
            var payload = message[XsWire.HeaderSize..];
            int rc = Handle(c, type, reqId, txId, payload);
            if (rc < 0) c.Send(XsWire.XS_ERROR, reqId, txId, Encoding.ASCII.GetBytes(XsWire.NameOf(-rc) + "\0"));
            return 0;
        }
    }

    /// <summary>One request (lock held): sends its reply and returns 0, or returns -errno for an error reply.</summary>
    private int Handle(XenstoreConnection c, uint type, uint reqId, uint txId, ReadOnlySpan<byte> payload)
    {
        ushort dom = c.Domain.Value;
        bool priv = dom == 0;
        // A write's payload is a path and raw bytes, not a list of strings: it is not split.
        IReadOnlyList<string> args = type == XsWire.XS_WRITE ? NoArgs : Split(payload);
        Transaction? tx = null;
        if (txId != 0 && !c.Transactions.TryGetValue(txId, out tx)) return -Errno.ENOENT;
        switch (type)
        {
            case XsWire.XS_READ:
            case XsWire.XS_DIRECTORY:
            case XsWire.XS_GET_PERMS:
            case XsWire.XS_DIRECTORY_PART:
            {
                if (args.Count < 1 || !TryCanonical(dom, args[0], false, out string abs, out _)) return -Errno.EINVAL;
                var view = tx?.View ?? _live;
                if (tx is not null) Touch(tx, abs);
                var n = Lookup(view.Root, abs);
                if (n is null) return -Errno.ENOENT;
                if (!n.AccessOf(dom).CanRead) return -Errno.EACCES;
                byte[] reply;
                if (type == XsWire.XS_READ) reply = n.Value;
                else if (type == XsWire.XS_GET_PERMS) reply = Encoding.ASCII.GetBytes(string.Concat(n.Perms.Select(p => p + "\0")));
                else if (type == XsWire.XS_DIRECTORY) reply = Encoding.UTF8.GetBytes(string.Concat(n.Children.Keys.Select(k => k + "\0")));
                else
                {
                    if (args.Count < 2 || !int.TryParse(args[1], NumberStyles.None, CultureInfo.InvariantCulture, out int offset)) return -Errno.EINVAL;
                    reply = DirectoryPart(n, offset);
                }
                if (reply.Length > XsWire.XENSTORE_PAYLOAD_MAX) return -Errno.E2BIG;
                c.Send(type, reqId, txId, reply);
                return 0;
            }
            case XsWire.XS_WRITE:
            {
                int nul = payload.IndexOf((byte)0);
                if (nul <= 0) return -Errno.EINVAL;
                if (!TryCanonical(dom, Encoding.UTF8.GetString(payload[..nul]), false, out string abs, out _)) return -Errno.EINVAL;
                byte[] value = payload[(nul + 1)..].ToArray();
                if (!priv && value.Length > Options.MaxValueSize) return -Errno.ENOSPC;   // XS04 quota
                return Change(c, tx, type, reqId, txId, abs, (d, v, p) => d.WriteIn(v, dom, p, value));
            }
            case XsWire.XS_MKDIR:
            case XsWire.XS_RM:
            {
                if (args.Count < 1 || !TryCanonical(dom, args[0], false, out string abs, out _)) return -Errno.EINVAL;
                return type == XsWire.XS_MKDIR
                    ? Change(c, tx, type, reqId, txId, abs, (d, v, p) => d.MkdirIn(v, dom, p))
                    : Change(c, tx, type, reqId, txId, abs, (d, v, p) => d.RmIn(v, dom, p));
            }
            case XsWire.XS_SET_PERMS:
            {
                if (args.Count < 2 || !TryCanonical(dom, args[0], false, out string abs, out _)) return -Errno.EINVAL;
                var list = ImmutableArray.CreateBuilder<XsPerm>();
                for (int i = 1; i < args.Count; i++)
                {
                    if (!XsPerm.TryParse(args[i], out var p)) return -Errno.EINVAL;
                    list.Add(p);
                }
                var perms = list.ToImmutable();
                return Change(c, tx, type, reqId, txId, abs, (d, v, p) => d.SetPermsIn(v, dom, p, perms));
            }
            case XsWire.XS_WATCH:
            {
                if (args.Count < 2 || !TryCanonical(dom, args[0], true, out string abs, out bool relative)) return -Errno.EINVAL;
                if (c.Watches.Exists(w => w.AbsolutePath == abs && w.Token == args[1])) return -Errno.EEXIST;
                if (!priv && c.Watches.Count >= Options.WatchesPerConnection) return -Errno.E2BIG;   // XS04 quota
                c.Watches.Add(new XenstoreConnection.Watch(args[0], args[1], abs, relative));
                c.Send(type, reqId, txId, Ok);
                // XS05: a watch fires once at registration.
                c.SendEvent(args[0], args[1]);
                return 0;
            }
            case XsWire.XS_UNWATCH:
            {
                if (args.Count < 2 || !TryCanonical(dom, args[0], true, out string abs, out _)) return -Errno.EINVAL;
                int i = c.Watches.FindIndex(w => w.AbsolutePath == abs && w.Token == args[1]);
                if (i < 0) return -Errno.ENOENT;
                c.Watches.RemoveAt(i);
                c.Send(type, reqId, txId, Ok);
                return 0;
            }
            case XsWire.XS_RESET_WATCHES:
                c.Watches.Clear();
                c.Send(type, reqId, txId, Ok);
                return 0;
            case XsWire.XS_TRANSACTION_START:
            {
                if (txId != 0) return -Errno.EBUSY;   // no nested transactions
                if (!priv && c.Transactions.Count >= Options.TransactionsPerConnection) return -Errno.ENOSPC;   // XS06
                uint id = c.NextTransactionId++;
                c.Transactions[id] = new Transaction
                {
                    Snapshot = _live.Root,
                    View = new View { Root = _live.Root, Owned = new Dictionary<ushort, int>(_live.Owned) },
                };
                c.Send(type, reqId, 0, Encoding.ASCII.GetBytes(id.ToString(CultureInfo.InvariantCulture) + "\0"));
                return 0;
            }
            case XsWire.XS_TRANSACTION_END:
            {
                if (tx is null || args.Count < 1 || args[0] is not ("T" or "F")) return -Errno.EINVAL;
                c.Transactions.Remove(txId);
                if (args[0] == "T")
                {
                    int rc = Commit(tx);
                    if (rc < 0) return rc;
                }
                c.Send(type, reqId, txId, Ok);
                return 0;
            }
            case XsWire.XS_GET_DOMAIN_PATH:
            {
                if (args.Count < 1 || !ushort.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out ushort id)) return -Errno.EINVAL;
                c.Send(type, reqId, txId, Encoding.ASCII.GetBytes(HomeOf(id) + "\0"));
                return 0;
            }
            case XsWire.XS_INTRODUCE:
            case XsWire.XS_RELEASE:
            case XsWire.XS_IS_DOMAIN_INTRODUCED:
            {
                if (!priv) return -Errno.EACCES;
                if (args.Count < 1 || !ushort.TryParse(args[0], NumberStyles.None, CultureInfo.InvariantCulture, out ushort id)) return -Errno.EINVAL;
                if (type == XsWire.XS_IS_DOMAIN_INTRODUCED)
                {
                    c.Send(type, reqId, txId, _introduced.Contains(id) ? "T\0"u8 : "F\0"u8);
                    return 0;
                }
                c.Send(type, reqId, txId, Ok);   // replied first: a release may close this very connection
                if (type == XsWire.XS_INTRODUCE)
                {
                    _introduced.Add(id);
                    FireSpecial("@introduceDomain");
                }
                else
                {
                    foreach (var other in _connections.ToArray())
                        if (other.Domain.Value == id) CloseLocked(other);
                    _introduced.Remove(id);
                    FireSpecial("@releaseDomain");
                }
                return 0;
            }
            case XsWire.XS_CONTROL:
            case XsWire.XS_RESUME:
            case XsWire.XS_SET_TARGET:
                // Not provided by this daemon (no debug commands, no suspend/resume, no stub domains).
                return priv ? -Errno.ENOSYS : -Errno.EACCES;
            default:
                return -Errno.EINVAL;
        }
    }

    /// <summary>A change request: in a transaction it runs on the transaction's view and is recorded for the
    /// commit; otherwise on the live store, firing watches.</summary>
    private int Change(XenstoreConnection c, Transaction? tx, uint type, uint reqId, uint txId, string abs, Func<XenstoreDaemon, View, string, int> op)
    {
        int rc;
        if (tx is not null)
        {
            Touch(tx, abs);
            TouchParent(tx, abs);
            rc = op(this, tx.View, abs);
            tx.View.Changes.Clear();
            if (rc == 0) tx.Replay.Add(v => op(this, v, abs));
        }
        else rc = Apply(abs, op);
        if (rc < 0) return rc;
        c.Send(type, reqId, txId, Ok);
        return 0;
    }

    /// <summary>XS06: commit when nothing the transaction touched changed since its snapshot; else EAGAIN.
    /// The changes are replayed on a copy of the live store and swapped in only if all succeed.</summary>
    private int Commit(Transaction tx)
    {
        foreach (var (path, seen) in tx.Accessed)
            if (GenerationOf(_live.Root, path) != seen) return -Errno.EAGAIN;
        var next = new View { Root = _live.Root, Owned = new Dictionary<ushort, int>(_live.Owned) };
        var changes = new List<(string, ImmutableArray<XsPerm>, bool)>();
        foreach (var replay in tx.Replay)
        {
            next.Changes.Clear();
            int rc = replay(next);
            if (rc < 0) return rc;
            changes.AddRange(next.Changes);
        }
        _live = next;
        next.Changes.Clear();
        next.Changes.AddRange(changes);
        FireChanges(next);
        return 0;
    }

    private static void Touch(Transaction tx, string abs)
    {
        if (!tx.Accessed.ContainsKey(abs)) tx.Accessed[abs] = GenerationOf(tx.Snapshot, abs);
    }

    private static void TouchParent(Transaction tx, string abs)
    {
        int slash = abs.LastIndexOf('/');
        if (slash > 0) Touch(tx, abs[..slash]);
        else if (slash == 0 && abs.Length > 1) Touch(tx, "/");
    }

    private static long GenerationOf(XsNode root, string abs) => Lookup(root, abs)?.Generation ?? -1;

    // ------------------------------------------------------------------ tree operations on a view

    private int WriteIn(View v, ushort dom, string abs, byte[] value) => CreateOrUpdate(v, dom, abs, value, replaceValue: true);

    private int MkdirIn(View v, ushort dom, string abs) => CreateOrUpdate(v, dom, abs, [], replaceValue: false);

    /// <summary>Writes a value (or makes sure a node exists), creating missing parents, each new node
    /// inheriting its parent's permissions with an unprivileged creator as owner (XS03, XS04).</summary>
    private int CreateOrUpdate(View v, ushort dom, string abs, byte[] value, bool replaceValue)
    {
        var segs = Segments(abs);
        var chain = Chain(v.Root, segs);
        var existing = chain[^1];
        if (existing is not null)
        {
            if (!existing.AccessOf(dom).CanWrite) return -Errno.EACCES;
            if (!replaceValue) return 0;
            Rebuild(v, segs, chain, new XsNode(value, existing.Perms, existing.Children, ++_generation), null);
            v.Changes.Add((abs, existing.Perms, false));
            return 0;
        }
        int deepest = 0;
        for (int k = 0; k < chain.Length; k++) if (chain[k] is not null) deepest = k;
        var parent = chain[deepest]!;
        if (!parent.AccessOf(dom).CanWrite) return -Errno.EACCES;
        var perms = parent.Perms;
        if (dom != 0) perms = perms.SetItem(0, new XsPerm(perms[0].Access, dom));   // unprivileged creators own what they make
        int created = segs.Length - deepest;
        ushort owner = perms[0].Domain;
        if (dom != 0 && v.Owned.GetValueOrDefault(owner) + created > Options.NodesPerDomain) return -Errno.ENOSPC;   // XS04 quota
        var leaf = new XsNode(value, perms, XsNode.NoChildren, ++_generation);
        Rebuild(v, segs, chain, leaf, k => new XsNode([], perms, XsNode.NoChildren, ++_generation));
        v.Owned[owner] = v.Owned.GetValueOrDefault(owner) + created;
        v.Changes.Add((abs, perms, false));
        return 0;
    }

    /// <summary>Removes a subtree (write permission on the node); a missing node whose parent exists is
    /// fine, a missing parent is ENOENT, as xenstored answers.</summary>
    private int RmIn(View v, ushort dom, string abs)
    {
        if (abs == "/") return -Errno.EINVAL;
        var segs = Segments(abs);
        var chain = Chain(v.Root, segs);
        var node = chain[^1];
        if (node is null) return chain[^2] is null ? -Errno.ENOENT : 0;
        if (!node.AccessOf(dom).CanWrite) return -Errno.EACCES;
        Rebuild(v, segs, chain, null, null);
        var gone = new Dictionary<ushort, int>();
        node.CountOwners(gone);
        foreach (var (owner, n) in gone) v.Owned[owner] = v.Owned.GetValueOrDefault(owner) - n;
        v.Changes.Add((abs, node.Perms, true));
        return 0;
    }

    /// <summary>SET_PERMS: the owner (or dom0) sets the list; an unprivileged owner cannot give the node away.</summary>
    private int SetPermsIn(View v, ushort dom, string abs, ImmutableArray<XsPerm> perms)
    {
        var segs = Segments(abs);
        var chain = Chain(v.Root, segs);
        var node = chain[^1];
        if (node is null) return -Errno.ENOENT;
        if (dom != 0 && dom != node.Owner) return -Errno.EACCES;
        if (dom != 0 && perms[0].Domain != node.Owner) return -Errno.EPERM;
        Rebuild(v, segs, chain, new XsNode(node.Value, perms, node.Children, ++_generation), null);
        if (perms[0].Domain != node.Owner)
        {
            v.Owned[node.Owner] = v.Owned.GetValueOrDefault(node.Owner) - 1;
            v.Owned[perms[0].Domain] = v.Owned.GetValueOrDefault(perms[0].Domain) + 1;
        }
        v.Changes.Add((abs, perms, false));
        return 0;
    }

    /// <summary>Replaces the node at the end of <paramref name="segs"/> (null: removes it) and copies the path
    /// up to a new root; missing intermediate nodes are made by <paramref name="make"/>. A parent whose set of
    /// children changes gets a new generation.</summary>
    private void Rebuild(View v, string[] segs, XsNode?[] chain, XsNode? leaf, Func<int, XsNode>? make)
    {
        XsNode? cur = leaf;
        for (int k = segs.Length - 1; k >= 0; k--)
        {
            var parent = chain[k] ?? make!(k);
            bool had = chain[k + 1] is not null;   // the child as it was (Chain looked it up)
            var children = cur is null ? parent.Children.Remove(segs[k]) : parent.Children.SetItem(segs[k], cur);
            bool setChanged = had != (cur is not null);
            cur = new XsNode(parent.Value, parent.Perms, children, setChanged || chain[k] is null ? ++_generation : parent.Generation);
        }
        v.Root = cur!;
    }

    private static XsNode?[] Chain(XsNode root, string[] segs)
    {
        var chain = new XsNode?[segs.Length + 1];
        chain[0] = root;
        for (int k = 0; k < segs.Length; k++)
            chain[k + 1] = chain[k] is { } n && n.Children.TryGetValue(segs[k], out var child) ? child : null;
        return chain;
    }

    private static XsNode? Lookup(XsNode root, string abs)
    {
        var n = root;
        foreach (var s in Segments(abs))
            if (!n.Children.TryGetValue(s, out n!)) return null;
        return n;
    }

    /// <summary>The names along a canonical absolute path ("/a/b" gives a, b; "/" none).</summary>
    private static string[] Segments(string abs)
    {
        if (abs == "/") return [];
        var segs = new string[abs.AsSpan().Count('/')];
        int start = 1;
        for (int k = 0; k < segs.Length; k++)
        {
            int end = abs.IndexOf('/', start);
            if (end < 0) end = abs.Length;
            segs[k] = abs[start..end];
            start = end + 1;
        }
        return segs;
    }

    private static byte[] DirectoryPart(XsNode n, int offset)
    {
        // XS_DIRECTORY_PART: the node's generation, then the names from byte offset on (whole names, as many
        // as fit); an extra NUL marks the end of the list.
        var all = Encoding.UTF8.GetBytes(string.Concat(n.Children.Keys.Select(k => k + "\0")));
        var head = Encoding.ASCII.GetBytes(n.Generation.ToString(CultureInfo.InvariantCulture) + "\0");
        if (offset > all.Length) offset = all.Length;
        int room = XsWire.XENSTORE_PAYLOAD_MAX - head.Length - 1;
        int end = offset;
        while (end < all.Length)
        {
            int nul = Array.IndexOf(all, (byte)0, end);
            if (nul + 1 - offset > room) break;
            end = nul + 1;
        }
        bool complete = end == all.Length;
        var reply = new byte[head.Length + (end - offset) + (complete ? 1 : 0)];
        head.CopyTo(reply, 0);
        Array.Copy(all, offset, reply, head.Length, end - offset);
        return reply;
    }

    // ------------------------------------------------------------------ watches

    /// <summary>XS05: every change fires the watches at or above its path (and, for a removal, the watches
    /// inside the removed subtree), for connections whose domain may read the node.</summary>
    private void FireChanges(View v)
    {
        foreach (var (path, perms, removed) in v.Changes)
        {
            foreach (var c in _connections)
            {
                if (c.Watches.Count == 0 || !XsNode.AccessOf(perms, c.Domain.Value).CanRead) continue;
                foreach (var w in c.Watches)
                {
                    if (w.AbsolutePath.StartsWith('@')) continue;
                    if (IsAncestorOrSelf(w.AbsolutePath, path)) Event(c, w, path);
                    else if (removed && IsAncestorOrSelf(path, w.AbsolutePath)) Event(c, w, w.AbsolutePath);
                }
            }
        }
        v.Changes.Clear();
    }

    private void FireSpecial(string special)
    {
        foreach (var c in _connections)
            foreach (var w in c.Watches)
                if (w.AbsolutePath == special) c.SendEvent(special, w.Token);
    }

    private static void Event(XenstoreConnection c, XenstoreConnection.Watch w, string absPath)
    {
        // A watch registered with a relative path reports relative paths.
        string shown = absPath;
        if (w.Relative)
        {
            string home = HomeOf(c.Domain.Value) + "/";
            if (absPath.StartsWith(home, StringComparison.Ordinal)) shown = absPath[home.Length..];
        }
        c.SendEvent(shown, w.Token);
    }

    private static bool IsAncestorOrSelf(string ancestor, string path) =>
        ancestor == "/" || path == ancestor || (path.StartsWith(ancestor, StringComparison.Ordinal) && path[ancestor.Length] == '/');

    // ------------------------------------------------------------------ paths

    private static string HomeOf(ushort domain) => LocalDomain + "/" + domain.ToString(CultureInfo.InvariantCulture);

    /// <summary>XS03: an absolute path as given, a relative one under the caller's home; characters
    /// [A-Za-z0-9-/_@], no empty segment, no trailing slash, within the length limits; '@' names are
    /// special watch paths (allowed only where <paramref name="special"/>).</summary>
    internal static bool TryCanonical(ushort domain, string path, bool special, out string abs, out bool relative)
    {
        abs = path;
        relative = false;
        if (string.IsNullOrEmpty(path)) return false;
        if (path[0] == '@')
        {
            abs = path;
            return special && path is "@introduceDomain" or "@releaseDomain";
        }
        if (path.AsSpan().ContainsAnyExcept(PathChars)) return false;
        if (path[0] == '/')
        {
            if (path.Length > XsWire.XENSTORE_ABS_PATH_MAX) return false;
            abs = path;
        }
        else
        {
            if (path.Length > XsWire.XENSTORE_REL_PATH_MAX) return false;
            relative = true;
            abs = HomeOf(domain) + "/" + path;
        }
        if (abs.Length > 1 && (abs.EndsWith('/') || abs.Contains("//", StringComparison.Ordinal))) return false;
        return abs.Length <= XsWire.XENSTORE_ABS_PATH_MAX;
    }

    private static List<string> Split(ReadOnlySpan<byte> payload)
    {
        var list = new List<string>();
        while (!payload.IsEmpty)
        {
            int nul = payload.IndexOf((byte)0);
            if (nul < 0) { list.Add(Encoding.UTF8.GetString(payload)); break; }
            list.Add(Encoding.UTF8.GetString(payload[..nul]));
            payload = payload[(nul + 1)..];
        }
        return list;
    }
}
