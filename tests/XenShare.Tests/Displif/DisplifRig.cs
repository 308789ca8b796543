using System.Globalization;
using XenShare.Displif;
using XenShare.Emulation;
using XenShare.Tests.Xenbus;
using XenShare.Xenbus;
using XenShare.Xenstore;

namespace XenShare.Tests.Displif;

/// <summary>A dom0 displif backend for one device of a guest, as the tests run it: the toolstack's XB01
/// directories and the vdispl fields (as <c>xl</c> writes them, in the frontend directory), a
/// <see cref="GntDevImportSink"/> (or a test's sink), the backend's run, and a log of what it did.</summary>
internal sealed class DisplifRig : IAsyncDisposable
{
    public static readonly TimeSpan Patience = EventLog.Patience;

    private readonly CancellationTokenSource _cts = new(TimeSpan.FromMinutes(5));
    private XenstoreClient? _xs0;

    public DisplifBackend Backend { get; private set; } = null!;
    public GntDevImportSink? ImportSink { get; private set; }
    public Task Run { get; private set; } = Task.CompletedTask;
    public EventLog Log { get; } = new();
    public List<DisplifRequestEventArgs> Requests { get; } = [];
    public List<(int Connector, ulong Fb, byte[] Pixels, FramePath Path)> Frames { get; } = [];
    public string FrontendPath { get; private set; } = "";
    public string BackendPath { get; private set; } = "";

    public static async Task<DisplifRig> StartAsync(EmulatedHost host, EmulatedGuest dom0, IGuestProcess p0, EmulatedGuest frontend,
        int deviceId = 0, bool beAlloc = false, int connectors = 1, DisplifBackendOptions? options = null, IDisplaySink? sink = null,
        bool preferSourceRefs = false)
    {
        var rig = new DisplifRig();
        var (fe, be) = host.AddDevice(frontend, dom0, "vdispl", deviceId);
        rig.FrontendPath = fe;
        rig.BackendPath = be;
        // XB01/DP01 as xl writes a vdispl device: be-alloc and the connectors in the frontend directory.
        Check(host.Xenstore.Write(fe + "/be-alloc", beAlloc ? "1" : "0"));
        for (int n = 0; n < connectors; n++)
        {
            string c = n.ToString(CultureInfo.InvariantCulture);
            Check(host.Xenstore.Write(fe + "/" + c + "/resolution", n == 0 ? "640x480" : "800x600"));
            Check(host.Xenstore.Write(fe + "/" + c + "/unique-id", "conn" + c));
        }
        rig._xs0 = XenstoreClient.OpenXenbus(p0);
        if (sink is null)
        {
            rig.ImportSink = new GntDevImportSink(p0, dom0.Id) { PreferSourceRefs = preferSourceRefs };
            rig.ImportSink.FrameShown += rig.OnFrame;
            sink = rig.ImportSink;
        }
        rig.Backend = await DisplifBackend.OpenAsync(rig._xs0, p0, dom0.Id, frontend.Id, deviceId, sink,
            options ?? new DisplifBackendOptions { FrameInterval = TimeSpan.FromMilliseconds(2) });
        rig.Backend.RequestServed += (_, e) =>
        {
            lock (rig.Requests) rig.Requests.Add(e);
            rig.Log.Add(string.Create(CultureInfo.InvariantCulture, $"req {e.Connector} {e.Id} 0x{e.Operation:x2} {e.Status}"));
        };
        rig.Backend.ConnectionChanged += (_, e) => rig.Log.Add(e.Kind switch
        {
            DisplifConnectionChange.StateSwitched => "state " + (int)e.State,
            DisplifConnectionChange.Disconnected => "disconnected " + e.Reason,
            DisplifConnectionChange.Faulted => "faulted " + e.Error?.GetType().Name,
            _ => e.Kind.ToString(),
        });
        rig.Run = Task.Run(() => rig.Backend.RunAsync(rig._cts.Token));
        await rig.Log.WaitUntilAsync(l => l.Contains("state 2"), "the backend's InitWait");
        return rig;

        static void Check(int rc) => Assert.True(rc >= 0, "xenstore write: " + rc);
    }

    private void OnFrame(in DisplayFrame frame)
    {
        lock (Frames) Frames.Add((frame.Connector, frame.Framebuffer.FbCookie, frame.Pixels.ToArray(), frame.Path));
        Log.Add("frame " + frame.Connector);
    }

    public DisplifRequestEventArgs[] RequestsSnapshot()
    {
        lock (Requests) return [.. Requests];
    }

    public (int Connector, ulong Fb, byte[] Pixels, FramePath Path) LastFrame()
    {
        lock (Frames) return Frames[^1];
    }

    public async ValueTask DisposeAsync()
    {
        await _cts.CancelAsync();
        try
        {
            await Run.WaitAsync(Patience);
        }
        catch (OperationCanceledException)
        {
        }
        await Backend.DisposeAsync();
        ImportSink?.Dispose();
        if (_xs0 is not null) await _xs0.DisposeAsync();
        _cts.Dispose();
    }
}
