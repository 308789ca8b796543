using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using XenShare;
using XenShare.Abi;
using XenShare.Conformance;
using XenShare.Native;

// XenShare conformance runner: the suite of tests/XenShare.Conformance on the native backend, dom0
// granting to itself. Output, one line each (parsed by tools/realxen/run.sh):
//   XENSHARE-SUITE <n> scenarios          (how many lines of the next kind must follow)
//   XENSHARE-CONFORMANCE <ids> PASS|FAIL|SKIP <message>
//   XENSHARE-P10 <wrapper ns> <bare ns> <ratio>
//   XENSHARE-SUMMARY <passed> passed, <failed> failed, <skipped> skipped
// Arguments: [--only IDS[,IDS...]] [--domid N|auto] (the domain this runs in, default 0; auto: read from
// xenstore, as in a domU) [--prefix TAG] (instead of "XENSHARE-", e.g. "XENSHARE-DOMU-" for a domU's lines
// relayed through dom0) [--no-p10] [--two-domain] (after the suite, the domU halves of the two-domain
// scenarios, counted in the suite) [--serve-peer DOMU] (dom0: only the dom0 halves of the two-domain
// scenarios for that domU, printed as <prefix>PEER-CONFORMANCE lines).
var inv = CultureInfo.InvariantCulture;
// The two-domain scenarios both sides run, in this order: grants and dma-bufs across domains, then the
// xenbus device handshake (XB02+XB03).
IReadOnlyList<TwoDomainScenarios.Scenario> twoDomainScenarios = [.. TwoDomainScenarios.All, .. XenbusScenarios.All];
ushort self = 0;
bool autoDomid = false, p10 = true, twoDomain = false, victim = false;
ushort? servePeer = null, serveVictim = null;
string tag = "XENSHARE-";
HashSet<string>? only = null;
for (int i = 0; i < args.Length; i++)
{
    if (args[i] == "--domid" && i + 1 < args.Length)
    {
        string v = args[++i];
        if (v == "auto") autoDomid = true;
        else self = ushort.Parse(v, inv);
    }
    else if (args[i] == "--only" && i + 1 < args.Length) only = [.. args[++i].Split(',')];
    else if (args[i] == "--prefix" && i + 1 < args.Length) tag = args[++i];
    else if (args[i] == "--no-p10") p10 = false;
    else if (args[i] == "--two-domain") twoDomain = true;
    else if (args[i] == "--serve-peer" && i + 1 < args.Length) servePeer = ushort.Parse(args[++i], inv);
    else if (args[i] == "--serve-victim" && i + 1 < args.Length) serveVictim = ushort.Parse(args[++i], inv);
    else if (args[i] == "--victim") victim = true;
}

using var process = new LinuxGuestProcess();
if (autoDomid)
{
    // A domU learns its id from its home in xenstore, written by the toolstack.
    await using var xs = XenShare.Xenstore.XenstoreClient.OpenXenbus(process);
    self = ushort.Parse(await xs.ReadStringAsync("domid"), inv);
}
if (victim)
{
    // A domU that dom0 destroys in the middle of its scenarios: its halves never return.
    await using var xsV = XenShare.Xenstore.XenstoreClient.OpenXenbus(process);
    var vContext = new TwoDomainContext(process, new DomainId(self), DomainId.Dom0, new DomainId(self), xsV);
    foreach (var s in TwoDomainScenarios.Victim) Console.WriteLine($"{tag}VICTIM {s.Ids}: {TwoDomainScenarios.RunDomU(s, vContext).Message}");
    return 1;
}
if (serveVictim is ushort doomed)
{
    // dom0's halves of the victim scenarios, which destroy that domU with xl; counted like a domain's suite.
    await using var xsD = XenShare.Xenstore.XenstoreClient.OpenXenbus(process);
    string did = doomed.ToString(inv);
    var dContext = new TwoDomainContext(process, new DomainId(self), new DomainId(doomed), new DomainId(doomed), xsD)
    {
        DestroyPeer = async () =>
        {
            var (rc, _) = await Xl("destroy", did);
            if (rc != 0) throw new ConformanceException("xl destroy " + did + " exited with " + rc);
        },
        // A dying domain loses its name in xl's list but keeps its id until its last page is unmapped.
        Observe = note => Console.WriteLine($"{tag}OBSERVED {note}"),
        PeerExists = async () => (await Xl("list")).Output.Split('\n').Any(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries) is { Length: > 1 } f && f[1] == did),
    };
    Console.WriteLine($"{tag}SUITE {TwoDomainScenarios.Victim.Count} scenarios");
    int vp = 0, vf = 0;
    foreach (var s in TwoDomainScenarios.Victim)
    {
        var sw = Stopwatch.StartNew();
        var r = TwoDomainScenarios.RunDom0(s, dContext);
        if (r.Outcome == Outcome.Pass) vp++; else vf++;
        Console.WriteLine($"{tag}CONFORMANCE {s.Ids} {(r.Outcome == Outcome.Pass ? "PASS" : "FAIL")} {r.Message} ({sw.ElapsedMilliseconds} ms; dom0 half, the domU destroyed: {s.Name})");
    }
    Console.WriteLine($"{tag}SUMMARY {vp} passed, {vf} failed, 0 skipped");
    return vf == 0 ? 0 : 1;
}
if (servePeer is ushort domU)
{
    // dom0's halves of the two-domain scenarios, in the order the domU runs its halves.
    await using var xs0 = XenShare.Xenstore.XenstoreClient.OpenXenbus(process);
    var peerContext = new TwoDomainContext(process, new DomainId(self), new DomainId(domU), new DomainId(domU), xs0);
    int peerFails = 0;
    foreach (var s in twoDomainScenarios)
    {
        var sw = Stopwatch.StartNew();
        var r = TwoDomainScenarios.RunDom0(s, peerContext);
        if (r.Outcome == Outcome.Fail) peerFails++;
        Console.WriteLine($"{tag}PEER-CONFORMANCE {s.Ids} {(r.Outcome == Outcome.Pass ? "PASS" : "FAIL")} {r.Message} ({sw.ElapsedMilliseconds} ms; dom0 half: {s.Name})");
    }
    return peerFails == 0 ? 0 : 1;
}
var source = File.Exists("/dev/dma_heap/system") ? LocalDmaBufSource.DmaHeap : LocalDmaBufSource.GntDevSelfExport;
var id = new DomainId(self);
var context = new ConformanceContext(process, process, id, id, source, "native dom" + self + "->self");
Console.WriteLine($"{tag}INFO {context.Name}, local dma-buf: {source}");
Console.WriteLine($"{tag}INFO " + NativeXen.Probe().ToString().Replace('\n', ';'));

int pass = 0, fail = 0, skip = 0;
int selected = 0;
foreach (var s in ConformanceSuite.All) if (only is null || only.Contains(s.Ids)) selected++;
if (twoDomain) selected += twoDomainScenarios.Count;
// The stage checks that this many scenario lines follow (a scenario that hangs or is lost fails it).
Console.WriteLine($"{tag}SUITE {selected} scenarios");
foreach (var s in ConformanceSuite.All)
{
    if (only is not null && !only.Contains(s.Ids)) continue;
    var sw = Stopwatch.StartNew();
    var r = s.Run(context);
    switch (r.Outcome)
    {
        case Outcome.Pass: pass++; break;
        case Outcome.Fail: fail++; break;
        default: skip++; break;
    }
    string word = r.Outcome switch { Outcome.Pass => "PASS", Outcome.Fail => "FAIL", _ => "SKIP" };
    Console.WriteLine($"{tag}CONFORMANCE {s.Ids} {word} {r.Message} ({sw.ElapsedMilliseconds} ms; {s.Name})");
}

if (twoDomain)
{
    // The domU's halves of the two-domain scenarios: dom0 runs the other halves (--serve-peer) meanwhile.
    await using var xsU = XenShare.Xenstore.XenstoreClient.OpenXenbus(process);
    var twoContext = new TwoDomainContext(process, id, DomainId.Dom0, id, xsU);
    foreach (var s in twoDomainScenarios)
    {
        var sw = Stopwatch.StartNew();
        var r = TwoDomainScenarios.RunDomU(s, twoContext);
        if (r.Outcome == Outcome.Pass) pass++; else fail++;
        Console.WriteLine($"{tag}CONFORMANCE {s.Ids} {(r.Outcome == Outcome.Pass ? "PASS" : "FAIL")} {r.Message} ({sw.ElapsedMilliseconds} ms; domU half, with dom0: {s.Name})");
    }
}

if (p10) P10.Measure(process);
Console.WriteLine($"{tag}SUMMARY {pass} passed, {fail} failed, {skip} skipped");
return fail == 0 ? 0 : 1;

// Runs Xen's xl (dom0's toolstack) and returns its exit code and output.
static async Task<(int Rc, string Output)> Xl(params string[] args)
{
    var start = new ProcessStartInfo("/usr/lib/xen-4.17/bin/xl") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
    foreach (var a in args) start.ArgumentList.Add(a);
    using var p = Process.Start(start)!;
    var output = p.StandardOutput.ReadToEndAsync();
    var error = p.StandardError.ReadToEndAsync();
    await p.WaitForExitAsync();
    _ = await error;
    return (p.ExitCode, await output);
}

/// <summary>P10: LinuxGuestProcess.Ioctl against a bare [LibraryImport] ioctl of the same request.</summary>
internal static partial class P10
{
    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static unsafe partial int BareIoctl(int fd, nuint request, void* arg);

    public static unsafe void Measure(IGuestProcess process)
    {
        int fd = process.Open("/dev/xen/gntdev", Posix.O_RDWR | Posix.O_CLOEXEC);
        if (fd < 0)
        {
            Console.WriteLine("XENSHARE-P10 SKIP cannot open /dev/xen/gntdev: " + fd);
            return;
        }
        // A cheap ioctl that reaches the driver and fails there: SET_MAX_GRANTS -> ENOTTY.
        uint request = GntDevIoctl.IOCTL_GNTDEV_SET_MAX_GRANTS;
        Span<byte> arg = stackalloc byte[4];
        const int Rounds = 5, N = 20000;
        double bestWrapper = double.MaxValue, bestBare = double.MaxValue;
        for (int round = 0; round < Rounds; round++)
        {
            var sw = Stopwatch.StartNew();
            for (int i = 0; i < N; i++) process.Ioctl(fd, request, arg);
            bestWrapper = Math.Min(bestWrapper, sw.Elapsed.TotalNanoseconds / N);
            sw.Restart();
            fixed (byte* p = arg)
            {
                for (int i = 0; i < N; i++)
                {
                    if (BareIoctl(fd, request, p) < 0) _ = Marshal.GetLastPInvokeError();
                }
            }
            bestBare = Math.Min(bestBare, sw.Elapsed.TotalNanoseconds / N);
        }
        int check = process.Ioctl(fd, request, arg);
        process.Close(fd);
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(inv, $"XENSHARE-P10 {bestWrapper:F0} {bestBare:F0} {bestWrapper / bestBare:F3} (request 0x{request:x8} -> {check}, best of {Rounds}x{N})"));
    }
}
