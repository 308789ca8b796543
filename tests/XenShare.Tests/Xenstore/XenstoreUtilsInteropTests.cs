using System.Diagnostics;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Xenstore;

namespace XenShare.Tests.Xenstore;

/// <summary>
/// XS07 with clients nobody here wrote: Debian's <c>xenstore-utils</c> (<c>xenstore-write</c>, <c>-read</c>,
/// <c>-ls</c>, <c>-list</c>, <c>-exists</c>, <c>-chmod</c>, <c>-rm</c>, <c>-watch</c>, with Xen's own
/// libxenstore, which wraps each command in a transaction) against the emulated daemon served on a Unix
/// socket, as <c>xenshare xenstored</c> serves it. The tools come from tools/xenstore-utils.sh: the
/// installed package, or Debian's packages unpacked into a cache (no install).
/// </summary>
public sealed class XenstoreUtilsInteropTests : IAsyncLifetime, IDisposable
{
    private readonly EmulatedHost _host = new(65536);
    private readonly string _dir = Directory.CreateTempSubdirectory("xenshare-xs-").FullName;
    private XenstoreSocketServer? _server;
    private string _bin = "", _lib = "";

    private string Socket => Path.Combine(_dir, "socket");

    public async Task InitializeAsync()
    {
        _host.CreateGuest(new DomainConfig { RamPages = 256, UnpopulatedPages = 256 });
        _server = XenstoreSocketServer.Start(_host.Xenstore, Socket);
        var (rc, stdout, stderr) = await RunAsync("bash", [Path.Combine(TestPaths.RepositoryRoot(), "tools", "xenstore-utils.sh")], env: false);
        Assert.True(rc == 0, "tools/xenstore-utils.sh could not provide Debian's xenstore tools:\n" + stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        (_bin, _lib) = (lines[0], lines[1]);
    }

    public async Task DisposeAsync()
    {
        if (_server is not null) await _server.DisposeAsync();
        Assert.Equal(0, _host.Xenstore.ConnectionCount);   // every client's connection ended with it
        Assert.Empty(_host.CheckLeaks());
        Directory.Delete(_dir, recursive: true);
    }

    public void Dispose() => _host.Dispose();

    private Task<(int Rc, string Out, string Err)> Tool(string name, params string[] args) => RunAsync(Path.Combine(_bin, name), args, env: true);

    [Fact]
    public async Task XS07_DebianXenstoreTools_WriteReadLsListExistsChmodRm()
    {
        Assert.Equal(0, (await Tool("xenstore-write", "/tool/xenshare/key", "hello", "/tool/xenshare/other", "x")).Rc);
        Assert.Equal("hello", _host.Xenstore.Read("/tool/xenshare/key"));
        var read = await Tool("xenstore-read", "/tool/xenshare/key");
        Assert.Equal((0, "hello\n"), (read.Rc, read.Out));
        var list = await Tool("xenstore-list", "/local/domain");
        Assert.Equal((0, "0\n1\n"), (list.Rc, list.Out));
        var ls = await Tool("xenstore-ls", "/local/domain/1");
        Assert.Equal(0, ls.Rc);
        Assert.Contains("domid = \"1\"", ls.Out, StringComparison.Ordinal);
        Assert.Equal(0, (await Tool("xenstore-exists", "/tool/xenshare/key")).Rc);
        Assert.NotEqual(0, (await Tool("xenstore-exists", "/tool/xenshare/nothing")).Rc);
        Assert.Equal(0, (await Tool("xenstore-chmod", "/tool/xenshare/key", "n0", "r1")).Rc);
        var perms = await Tool("xenstore-ls", "-p", "/tool/xenshare");
        Assert.Contains("(n0,r1)", perms.Out, StringComparison.Ordinal);
        Assert.Equal(0, (await Tool("xenstore-rm", "/tool/xenshare/key")).Rc);
        Assert.Null(_host.Xenstore.Read("/tool/xenshare/key"));
        var missing = await Tool("xenstore-read", "/tool/xenshare/key");
        Assert.NotEqual(0, missing.Rc);                         // ENOENT reaches the tool as an error
        Assert.Contains("couldn't read path", missing.Err, StringComparison.Ordinal);
    }

    [Fact]
    public async Task XS05_XS07_DebianXenstoreWatch_SeesTheRegistrationEventThenAChange()
    {
        var start = new ProcessStartInfo(Path.Combine(_bin, "xenstore-watch")) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-n", "2", "/tool/watched" }) start.ArgumentList.Add(a);
        Env(start);
        using var p = Process.Start(start)!;
        var first = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal("/tool/watched", first);                  // fired once at registration
        Assert.Equal(0, _host.Xenstore.Write("/tool/watched/leaf", "1"));
        var second = await p.StandardOutput.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal("/tool/watched/leaf", second);
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(0, p.ExitCode);
    }

    private void Env(ProcessStartInfo s)
    {
        s.Environment["XENSTORED_PATH"] = Socket;
        s.Environment["LD_LIBRARY_PATH"] = _lib;
    }

    private async Task<(int Rc, string Out, string Err)> RunAsync(string file, string[] args, bool env)
    {
        var s = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) s.ArgumentList.Add(a);
        if (env) Env(s);
        using var p = Process.Start(s)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(3));
        return (p.ExitCode, await stdout, await stderr);
    }

}
