using System.Buffers.Binary;
using System.Text;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Xenstore;

namespace XenShare.Tests.Xenstore;

/// <summary>The emulated xenstore daemon at the wire level (XS01-XS06, XS08) and the toolstack's device
/// directories (XB01).</summary>
public sealed class XenstoreDaemonTests
{
    /// <summary>A daemon with domains 0, 1 and 2 introduced, each owning its home (a layout a toolstack
    /// may choose; the emulated host writes libxl's instead, see XS08 below).</summary>
    private static XenstoreDaemon NewDaemon(XenstoreOptions? o = null)
    {
        var d = new XenstoreDaemon(o);
        for (ushort id = 0; id < 3; id++)
        {
            string home = "/local/domain/" + id;
            Assert.Equal(0, d.Write(home, ""));
            Assert.Equal(0, d.SetPermissions(home, "n" + id));
            d.IntroduceDomain(new DomainId(id));
        }
        return d;
    }

    [Fact]
    public void XS01_RepliesEchoReqIdAndTxId_AnOversizedOrTruncatedMessageClosesTheConnection()
    {
        var d = NewDaemon();
        using var c = new XsRawConnection(d, 0);
        Assert.Equal("OK\0", c.Write("/a", "1"));
        var start = c.Request(XsWire.XS_TRANSACTION_START, "");
        uint tx = uint.Parse(Encoding.ASCII.GetString(start.Payload).TrimEnd('\0'), System.Globalization.CultureInfo.InvariantCulture);
        var (type, txId, payload) = c.Request(XsWire.XS_READ, tx, XsRawConnection.Strings("/a"));
        Assert.Equal(XsWire.XS_READ, type);
        Assert.Equal(tx, txId);                       // replies carry the request's tx_id
        Assert.Equal("1"u8.ToArray(), payload);       // READ replies the raw value, no NUL

        var big = XsRawConnection.Message(XsWire.XS_WRITE, 9, 0, new byte[XsWire.XENSTORE_PAYLOAD_MAX + 1]);
        Assert.Equal(-Errno.EINVAL, c.Connection.Submit(big));
        Assert.True(c.Connection.IsClosed);
        Assert.Equal(-Errno.ENOTCONN, c.Connection.Submit(XsRawConnection.Message(XsWire.XS_READ, 10, 0, XsRawConnection.Strings("/a"))));

        using var c2 = new XsRawConnection(d, 0);
        var bad = XsRawConnection.Message(XsWire.XS_READ, 1, 0, XsRawConnection.Strings("/a"));
        BinaryPrimitives.WriteUInt32LittleEndian(bad.AsSpan(12), 99);   // announces more than it carries
        Assert.Equal(-Errno.EINVAL, c2.Connection.Submit(bad));
        Assert.True(c2.Connection.IsClosed);
        Assert.Equal(0, d.ConnectionCount);
    }

    [Fact]
    public void XS02_Operations_AndErrorsAsErrnoNames()
    {
        var d = NewDaemon();
        using var c = new XsRawConnection(d, 0);
        Assert.Equal("OK\0", c.Write("/x/y/z", "hello"));          // parents created (XS03)
        Assert.Equal("hello", c.Read("/x/y/z"));
        Assert.Equal("", c.Read("/x/y"));
        Assert.Equal("OK\0", c.Ok(XsWire.XS_MKDIR, "/x/m"));
        Assert.Equal("OK\0", c.Ok(XsWire.XS_MKDIR, "/x/m"));       // already there: fine
        Assert.Equal("m\0y\0", c.Ok(XsWire.XS_DIRECTORY, "/x"));
        Assert.Equal("n0\0", c.Ok(XsWire.XS_GET_PERMS, "/x/y/z"));
        Assert.Equal("OK\0", c.Ok(XsWire.XS_SET_PERMS, "/x/y/z", "n1", "r2"));
        Assert.Equal("n1\0r2\0", c.Ok(XsWire.XS_GET_PERMS, "/x/y/z"));
        Assert.Equal("/local/domain/7\0", c.Ok(XsWire.XS_GET_DOMAIN_PATH, "7"));
        Assert.Equal("T\0", c.Ok(XsWire.XS_IS_DOMAIN_INTRODUCED, "1"));
        Assert.Equal("F\0", c.Ok(XsWire.XS_IS_DOMAIN_INTRODUCED, "9"));
        Assert.Equal("OK\0", c.Ok(XsWire.XS_RM, "/x/y"));
        Assert.Equal("error:ENOENT", c.Read("/x/y/z"));
        Assert.Equal("OK\0", c.Ok(XsWire.XS_RM, "/x/nothing"));   // missing node under an existing parent: OK
        Assert.Equal("ENOENT", c.Error(XsWire.XS_RM, "/no/such"));
        Assert.Equal("EINVAL", c.Error(XsWire.XS_RM, "/"));
        Assert.Equal("EINVAL", c.Error(99));                       // unknown type
        Assert.Equal("ENOSYS", c.Error(XsWire.XS_RESUME, "1"));    // not provided, said so
        var part = c.Ok(XsWire.XS_DIRECTORY_PART, "/x", "0");
        Assert.EndsWith("\0m\0\0", part, StringComparison.Ordinal);  // generation, names, end mark

        using var guest = new XsRawConnection(d, 1);
        Assert.Equal("EACCES", guest.Error(XsWire.XS_INTRODUCE, "5", "0", "0"));
        Assert.Equal("EACCES", guest.Error(XsWire.XS_RELEASE, "2"));
    }

    [Fact]
    public void XS03_Paths_RelativeUnderHome_CharactersAndLengths()
    {
        var d = NewDaemon();
        using var g = new XsRawConnection(d, 1);
        Assert.Equal("OK\0", g.Write("data/key", "v"));            // relative: /local/domain/1/data/key
        Assert.Equal("v", d.Read("/local/domain/1/data/key"));
        Assert.Equal("v", g.Read("/local/domain/1/data/key"));
        foreach (var bad in new[] { "a//b", "/a/", "a b", "/a\u00e9", "@other" })
            Assert.Equal("EINVAL", g.Error(XsWire.XS_READ, bad));
        Assert.Equal("EINVAL", g.Error(XsWire.XS_READ, new string('a', XsWire.XENSTORE_REL_PATH_MAX + 1)));
        Assert.Equal("EINVAL", g.Error(XsWire.XS_READ, "/" + new string('a', XsWire.XENSTORE_ABS_PATH_MAX)));
    }

    [Fact]
    public void XS04_Permissions_OwnerReadersInheritanceAndDom0UnderADomainsHome()
    {
        var d = NewDaemon();
        using var dom0 = new XsRawConnection(d, 0);
        using var one = new XsRawConnection(d, 1);
        using var two = new XsRawConnection(d, 2);
        Assert.Equal("n1\0", dom0.Ok(XsWire.XS_GET_PERMS, "/local/domain/1"));     // a domain owns its home
        Assert.Equal("OK\0", one.Write("secret", "s"));
        Assert.Equal("n1\0", dom0.Ok(XsWire.XS_GET_PERMS, "/local/domain/1/secret"));
        Assert.Equal("error:EACCES", two.Read("/local/domain/1/secret"));          // others: none
        Assert.Equal("EACCES", two.Write("/local/domain/1/secret", "x"));
        Assert.Equal("OK\0", one.Ok(XsWire.XS_SET_PERMS, "secret", "n1", "r2"));
        Assert.Equal("s", two.Read("/local/domain/1/secret"));                      // now readable by dom2 ...
        Assert.Equal("EACCES", two.Write("/local/domain/1/secret", "x"));           // ... not writable
        Assert.Equal("EPERM", one.Error(XsWire.XS_SET_PERMS, "secret", "n2"));      // cannot give it away
        Assert.Equal("EACCES", two.Error(XsWire.XS_SET_PERMS, "/local/domain/1/secret", "b2"));
        // A new node inherits its parent's permissions, with an unprivileged creator as owner ...
        Assert.Equal("OK\0", one.Write("secret/child", "c"));
        Assert.Equal("n1\0r2\0", dom0.Ok(XsWire.XS_GET_PERMS, "/local/domain/1/secret/child"));
        // ... while what dom0 creates under a domain's home keeps that domain as owner (the toolstack's way).
        Assert.Equal("OK\0", dom0.Write("/local/domain/2/device/vdispl/0/state", "1"));
        Assert.Equal("n2\0", dom0.Ok(XsWire.XS_GET_PERMS, "/local/domain/2/device/vdispl/0/state"));
        Assert.Equal("1", two.Read("device/vdispl/0/state"));
        Assert.Equal("EACCES", one.Write("/local/domain/2/x", "y"));                // a guest cannot write elsewhere
        Assert.Equal("EACCES", one.Write("/tool/x", "y"));
    }

    [Fact]
    public void XS04_Quotas_Nodes_ValueSize_Watches_Transactions()
    {
        var d = NewDaemon(new XenstoreOptions { NodesPerDomain = 5, MaxValueSize = 8, WatchesPerConnection = 2, TransactionsPerConnection = 1 });
        using var g = new XsRawConnection(d, 1);
        for (int i = 0; i < 4; i++) Assert.Equal("OK\0", g.Write("n" + i, "v"));   // home + 4 = 5 nodes
        Assert.Equal("ENOSPC", g.Write("n4", "v"));
        Assert.Equal("ENOSPC", g.Write("n0", "123456789"));
        Assert.Equal("OK\0", g.Write("n0", "12345678"));
        Assert.Equal("OK\0", g.Ok(XsWire.XS_WATCH, "a", "t1"));
        Assert.Equal("OK\0", g.Ok(XsWire.XS_WATCH, "b", "t2"));
        Assert.Equal("E2BIG", g.Error(XsWire.XS_WATCH, "c", "t3"));
        g.Ok(XsWire.XS_TRANSACTION_START, "");
        Assert.Equal("ENOSPC", g.Error(XsWire.XS_TRANSACTION_START, ""));
        Assert.Equal("OK\0", g.Ok(XsWire.XS_RM, "n3"));
        Assert.Equal("OK\0", g.Write("n4", "v"));                                     // room again
        using var dom0 = new XsRawConnection(d, 0);
        for (int i = 0; i < 10; i++) Assert.Equal("OK\0", dom0.Write("/big/" + i, "0123456789abcdef"));   // dom0: no quota
    }

    [Fact]
    public void XS05_Watches_FireAtRegistrationAndOnChangesAtOrBelow_InOrder_UnwatchUnknownIsEnoent()
    {
        var d = NewDaemon();
        using var w = new XsRawConnection(d, 0);
        using var writer = new XsRawConnection(d, 0);
        Assert.Equal("OK\0", w.Ok(XsWire.XS_WATCH, "/dev", "tok"));
        Assert.Equal([("/dev", "tok")], w.TakeEvents());                 // once at registration
        writer.Write("/dev/a", "1");
        writer.Write("/dev/a/b", "2");
        writer.Write("/other", "3");                                     // not at or below: silent
        writer.Ok(XsWire.XS_SET_PERMS, "/dev/a", "n0", "r1");
        writer.Ok(XsWire.XS_RM, "/dev/a");
        Assert.Equal([("/dev/a", "tok"), ("/dev/a/b", "tok"), ("/dev/a", "tok"), ("/dev/a", "tok")], w.TakeEvents());
        // A watch inside a removed subtree fires too, with its own path.
        writer.Write("/dev/x/y", "1");
        w.Ok(XsWire.XS_WATCH, "/dev/x/y", "inner");
        w.TakeEvents();
        writer.Ok(XsWire.XS_RM, "/dev/x");
        Assert.Contains(("/dev/x/y", "inner"), w.TakeEvents());
        Assert.Equal("OK\0", w.Ok(XsWire.XS_UNWATCH, "/dev", "tok"));
        Assert.Equal("ENOENT", w.Error(XsWire.XS_UNWATCH, "/dev", "tok"));
        writer.Write("/dev/after", "1");
        Assert.DoesNotContain(w.TakeEvents(), e => e.Token == "tok");
        // A guest's relative watch reports relative paths, and only what it may read.
        using var g = new XsRawConnection(d, 1);
        g.Ok(XsWire.XS_WATCH, "data", "rel");
        g.TakeEvents();
        writer.Write("/local/domain/1/data/k", "v");
        Assert.Equal([("data/k", "rel")], g.TakeEvents());
        g.Ok(XsWire.XS_WATCH, "/tool", "tool");
        g.TakeEvents();
        writer.Write("/tool/hidden", "x");                               // dom0-only node: not shown to dom1
        Assert.Empty(g.TakeEvents());
        Assert.Equal("EEXIST", g.Error(XsWire.XS_WATCH, "data", "rel"));
        g.Ok(XsWire.XS_RESET_WATCHES);
        writer.Write("/local/domain/1/data/k2", "v");
        Assert.Empty(g.TakeEvents());
    }

    [Fact]
    public void XS06_Transactions_SnapshotConflictEagainAbortAndCommitFiresWatches()
    {
        var d = NewDaemon();
        using var a = new XsRawConnection(d, 0);
        using var b = new XsRawConnection(d, 0);
        a.Write("/t/x", "1");
        uint Start(XsRawConnection c) => uint.Parse(c.Ok(XsWire.XS_TRANSACTION_START, "").TrimEnd('\0'), System.Globalization.CultureInfo.InvariantCulture);
        string End(XsRawConnection c, uint tx, bool commit)
        {
            var (t, _, p) = c.Request(XsWire.XS_TRANSACTION_END, tx, XsRawConnection.Strings(commit ? "T" : "F"));
            return (t == XsWire.XS_ERROR ? "error:" : "") + Encoding.UTF8.GetString(p).TrimEnd('\0');
        }

        // Isolation: the transaction sees its snapshot and its own writes; others see nothing until commit.
        uint tx = Start(a);
        Assert.Equal("OK\0", a.Write("/t/y", "2", tx));
        Assert.Equal("2", a.Read("/t/y", tx));
        Assert.Equal("error:ENOENT", b.Read("/t/y"));
        b.Write("/u/z", "other");
        Assert.Equal("error:ENOENT", a.Read("/u/z", tx));                 // not in its snapshot ...
        Assert.Equal("error:EAGAIN", End(a, tx, commit: true));          // ... and it changed: retry
        Assert.Equal("error:ENOENT", b.Read("/t/y"));
        // The retry, undisturbed, commits.
        tx = Start(a);
        Assert.Equal("OK\0", a.Write("/t/y", "2", tx));
        b.Ok(XsWire.XS_WATCH, "/t", "w");
        b.TakeEvents();
        Assert.Equal("OK", End(a, tx, commit: true));
        Assert.Equal("2", b.Read("/t/y"));
        Assert.Contains(("/t/y", "w"), b.TakeEvents());                  // the commit fires watches

        // Conflict: what the transaction read changed meanwhile -> EAGAIN, nothing applied.
        tx = Start(a);
        Assert.Equal("1", a.Read("/t/x", tx));
        a.Write("/t/w", "3", tx);
        b.Write("/t/x", "changed");
        Assert.Equal("error:EAGAIN", End(a, tx, commit: true));
        Assert.Equal("error:ENOENT", b.Read("/t/w"));
        // Abort discards; an ended transaction id is unknown.
        tx = Start(a);
        a.Write("/t/v", "4", tx);
        Assert.Equal("OK", End(a, tx, commit: false));
        Assert.Equal("error:ENOENT", b.Read("/t/v"));
        Assert.Equal("error:ENOENT", a.Read("/t/x", tx));
        // A transaction ends with its connection.
        tx = Start(b);
        b.Write("/t/u", "5", tx);
        b.Dispose();
        Assert.Equal("error:ENOENT", a.Read("/t/u"));
    }

    [Fact]
    public void XS08_IntroduceAndRelease_HomeAsLibxlWritesIt_ReleaseFiresAndClosesItsConnections()
    {
        using var host = new EmulatedHost(65536);
        var d = host.Xenstore;
        using var toolstack = new XsRawConnection(d, 0);
        toolstack.Ok(XsWire.XS_WATCH, "@introduceDomain", "intro");
        toolstack.Ok(XsWire.XS_WATCH, "@releaseDomain", "rel");
        toolstack.TakeEvents();
        var guest = host.CreateGuest(new XenShare.Emulation.Hypervisor.DomainConfig { RamPages = 256, UnpopulatedPages = 256 });
        string home = "/local/domain/" + guest.Id.Value;
        Assert.True(d.IsIntroduced(guest.Id));
        Assert.Contains(("@introduceDomain", "intro"), toolstack.TakeEvents());
        // libxl's layout (the real-Xen stage's domU showed it): the home is dom0's, readable by the guest;
        // the guest owns data/ and may write only there.
        Assert.Equal("n0\0r" + guest.Id.Value + "\0", toolstack.Ok(XsWire.XS_GET_PERMS, home));
        Assert.Equal("n" + guest.Id.Value + "\0", toolstack.Ok(XsWire.XS_GET_PERMS, home + "/data"));
        Assert.Equal(guest.Id.Value.ToString(System.Globalization.CultureInfo.InvariantCulture), toolstack.Read(home + "/domid"));
        using var inGuest = new XsRawConnection(d, guest.Id.Value);
        Assert.Equal("EACCES", inGuest.Write("key", "v"));
        Assert.Equal("OK\0", inGuest.Write("data/key", "v"));
        inGuest.Ok(XsWire.XS_WATCH, "name", "w");
        host.DestroyGuest(guest);
        Assert.True(inGuest.Connection.IsClosed);                         // its connection is gone with it
        Assert.Contains(("@releaseDomain", "rel"), toolstack.TakeEvents());
        Assert.Equal("error:ENOENT", toolstack.Read(home));               // the toolstack removed its home
        Assert.False(d.IsIntroduced(guest.Id));
    }

    [Fact]
    public void XB01_AddDevice_WritesFrontendAndBackendDirectoriesLikeXl()
    {
        using var host = new EmulatedHost(65536);
        var domU = host.CreateGuest(new XenShare.Emulation.Hypervisor.DomainConfig { RamPages = 256, UnpopulatedPages = 256 });
        var (fe, be) = host.AddDevice(domU, host.Dom0, "vdispl", 0, new Dictionary<string, string> { ["be-alloc"] = "0", ["0/resolution"] = "640x480" });
        var d = host.Xenstore;
        string feId = domU.Id.Value.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal($"/local/domain/{feId}/device/vdispl/0", fe);
        Assert.Equal($"/local/domain/0/backend/vdispl/{feId}/0", be);
        Assert.Equal(be, d.Read(fe + "/backend"));
        Assert.Equal("0", d.Read(fe + "/backend-id"));
        Assert.Equal("1", d.Read(fe + "/state"));
        Assert.Equal(fe, d.Read(be + "/frontend"));
        Assert.Equal(feId, d.Read(be + "/frontend-id"));
        Assert.Equal("1", d.Read(be + "/online"));
        Assert.Equal("1", d.Read(be + "/state"));
        Assert.Equal("640x480", d.Read(be + "/0/resolution"));
        using var front = new XsRawConnection(d, domU.Id.Value);
        Assert.Equal("OK\0", front.Write("device/vdispl/0/state", "3"));      // the frontend owns its directory
        Assert.Equal("1", front.Read(be + "/state"));                       // and may read the backend's
        Assert.Equal("EACCES", front.Write(be + "/state", "4"));            // but not write it
        Assert.Equal($"n{feId}\0r0\0", front.Ok(XsWire.XS_GET_PERMS, "device/vdispl/0"));
    }
}
