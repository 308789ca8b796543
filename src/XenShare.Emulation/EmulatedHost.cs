using System.Globalization;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Xenstore;

namespace XenShare.Emulation;

/// <summary>
/// The embedded default backend: an in-process emulated Xen host with dom0 booted, on which more
/// guests can be created. Every guest runs an emulated Linux kernel with gntdev, gntalloc, evtchn and
/// xenbus, faithful at the ioctl level; dom0's xenstore daemon (<see cref="Xenstore"/>) serves every
/// domain, and the host plays the toolstack: it introduces and releases domains in the store and writes
/// device directories as <c>xl</c> does (<see cref="AddDevice"/>).
/// </summary>
public sealed class EmulatedHost : IDisposable
{
    private readonly List<EmulatedGuest> _guests = new();

    /// <summary>Creates a host with <paramref name="machineFrames"/> frames of machine memory and dom0; domain
    /// RAM is placed in machine memory as <paramref name="placement"/> says (DM01).</summary>
    public EmulatedHost(int machineFrames = 262144, DomainConfig? dom0 = null, KernelOptions? dom0Kernel = null, XenstoreOptions? xenstore = null,
        MachinePlacement placement = MachinePlacement.Extents)
    {
        Xen = new XenHost(machineFrames, placement);
        Xenstore = new XenstoreDaemon(xenstore);
        Dom0 = CreateGuest((dom0 ?? new DomainConfig()) with { Id = DomainId.Dom0 }, dom0Kernel);
    }

    /// <summary>dom0's xenstore daemon (XS01-XS08): every domain's <c>/dev/xen/xenbus</c> talks to it, and
    /// <c>xenshare xenstored</c> serves it on a Unix socket.</summary>
    public XenstoreDaemon Xenstore { get; }

    /// <summary>The hypervisor.</summary>
    public XenHost Xen { get; }

    /// <summary>dom0.</summary>
    public EmulatedGuest Dom0 { get; }

    /// <summary>Creates and boots a guest.</summary>
    public EmulatedGuest CreateGuest(DomainConfig? config = null, KernelOptions? kernel = null)
    {
        var d = Xen.CreateDomain(config ?? new DomainConfig());
        var g = new EmulatedGuest(Xen, d, kernel ?? new KernelOptions(), Xenstore);
        lock (_guests) _guests.Add(g);
        WriteHome(d.Id);
        Xenstore.IntroduceDomain(d.Id);
        return g;
    }

    /// <summary>XS08, as libxl does before it introduces a domain (and as the real-Xen stage showed): the
    /// home <c>/local/domain/&lt;id&gt;</c> is dom0's and only readable by the domain, as are its
    /// <c>device</c> and <c>control</c> directories, <c>name</c> and <c>domid</c>; the domain owns
    /// <c>data</c>, <c>drivers</c>, <c>feature</c>, <c>attr</c> and <c>error</c>, where it may write.</summary>
    private void WriteHome(DomainId id)
    {
        string home = HomeOf(id), d = id.Value.ToString(CultureInfo.InvariantCulture);
        string[] readOnly = ["n0", "r" + d], ownedByGuest = ["n" + d];
        Xenstore.Write(home + "/name", id == DomainId.Dom0 ? "Domain-0" : "domu" + d);
        Xenstore.Write(home + "/domid", d);
        foreach (var sub in new[] { "device", "control" }) Xenstore.Write(home + "/" + sub, "");
        foreach (var path in new[] { home, home + "/name", home + "/domid", home + "/device", home + "/control" })
            Xenstore.SetPermissions(path, readOnly);
        foreach (var sub in new[] { "data", "drivers", "feature", "attr", "error" })
        {
            Xenstore.Write(home + "/" + sub, "");
            Xenstore.SetPermissions(home + "/" + sub, ownedByGuest);
        }
    }

    /// <summary>XB01: writes a PV device's frontend and backend directories as <c>xl</c> does for
    /// <c>vdispl = [...]</c> and the like: <c>/local/domain/&lt;fe&gt;/device/&lt;type&gt;/&lt;id&gt;/</c>
    /// (<c>backend</c>, <c>backend-id</c>, <c>state</c> 1, owned by the frontend, readable by the backend) and
    /// <c>/local/domain/&lt;be&gt;/backend/&lt;type&gt;/&lt;fe&gt;/&lt;id&gt;/</c> (<c>frontend</c>,
    /// <c>frontend-id</c>, <c>online</c> 1, <c>state</c> 1, owned by the backend, readable by the frontend),
    /// plus <paramref name="backendFields"/> (relative to the backend directory: "be-alloc", "0/resolution",
    /// ...). Returns (frontend path, backend path).</summary>
    public (string Frontend, string Backend) AddDevice(EmulatedGuest frontend, EmulatedGuest backend, string type, int id,
        IReadOnlyDictionary<string, string>? backendFields = null)
    {
        ArgumentNullException.ThrowIfNull(frontend);
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentException.ThrowIfNullOrEmpty(type);
        string fe = frontend.Id.Value.ToString(CultureInfo.InvariantCulture), be = backend.Id.Value.ToString(CultureInfo.InvariantCulture);
        string devid = id.ToString(CultureInfo.InvariantCulture);
        string fePath = $"{HomeOf(frontend.Id)}/device/{type}/{devid}";
        string bePath = $"{HomeOf(backend.Id)}/backend/{type}/{fe}/{devid}";
        Check(Xenstore.Write(bePath + "/frontend", fePath), bePath);
        Check(Xenstore.Write(bePath + "/frontend-id", fe), bePath);
        Check(Xenstore.Write(bePath + "/online", "1"), bePath);
        Check(Xenstore.Write(bePath + "/state", "1"), bePath);
        if (backendFields is not null)
            foreach (var (k, v) in backendFields) Check(Xenstore.Write(bePath + "/" + k, v), bePath + "/" + k);
        Check(Xenstore.Write(fePath + "/backend", bePath), fePath);
        Check(Xenstore.Write(fePath + "/backend-id", be), fePath);
        Check(Xenstore.Write(fePath + "/state", "1"), fePath);
        SetTree(bePath, backend.Id, frontend.Id);
        SetTree(fePath, frontend.Id, backend.Id);
        return (fePath, bePath);

        static void Check(int rc, string what)
        {
            if (rc < 0) throw new InvalidOperationException($"xenstore write of {what} failed: {Abi.Errno.Name(-rc)}");
        }
    }

    /// <summary>Sets "n&lt;owner&gt;, r&lt;reader&gt;" on a node and everything below it.</summary>
    private void SetTree(string path, DomainId owner, DomainId reader)
    {
        string o = "n" + owner.Value.ToString(CultureInfo.InvariantCulture), r = "r" + reader.Value.ToString(CultureInfo.InvariantCulture);
        Xenstore.SetPermissions(path, o, r);
        foreach (var child in Xenstore.Directory(path)) SetTree(path + "/" + child, owner, reader);
    }

    private static string HomeOf(DomainId id) => "/local/domain/" + id.Value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Destroys a guest's domain (its processes should have exited).</summary>
    public void DestroyGuest(EmulatedGuest guest)
    {
        ArgumentNullException.ThrowIfNull(guest);
        lock (_guests) if (!_guests.Remove(guest)) return;
        Xen.DestroyDomain(guest.Id);
        // XS08: the toolstack removes the domain's home, then xenstored releases it (@releaseDomain).
        Xenstore.Remove(HomeOf(guest.Id));
        Xenstore.ReleaseDomain(guest.Id);
    }

    /// <summary>
    /// Destroys a running guest, as <c>xl destroy</c> does: the guest's kernel halts where it is
    /// (<see cref="GuestKernel.Halt"/>: its processes' calls fail with EIO from now on and nothing of it runs
    /// or cleans up), then Xen destroys the domain (its own grant mappings unmapped, ports closed, RAM given
    /// back; pages another domain still maps stay alive and the domain lingers as a zombie until they are
    /// unmapped: GT11, XD03), then the toolstack removes its xenstore home and xenstored releases it (XS08).
    /// The guest's processes should still be disposed by their owners (that gives back only the emulator's
    /// own address ranges). Throws if the halt could not pause a call still in progress within
    /// <paramref name="timeout"/> (default 30 s).
    /// </summary>
    public void KillGuest(EmulatedGuest guest, TimeSpan? timeout = null)
    {
        ArgumentNullException.ThrowIfNull(guest);
        lock (_guests) if (!_guests.Remove(guest)) return;
        bool paused = guest.Kernel.Halt(timeout ?? TimeSpan.FromSeconds(30));
        Xen.DestroyDomain(guest.Id);
        Xenstore.Remove(HomeOf(guest.Id));
        Xenstore.ReleaseDomain(guest.Id);
        if (!paused) throw new TimeoutException($"{guest}: a system call was still running when the domain was destroyed");
    }

    /// <summary>Whether a domain exists in Xen: alive, or dying and kept as a zombie because another domain
    /// still maps its pages (what <c>xl list</c> shows as <c>(null)</c> with state <c>d</c>).</summary>
    public bool DomainExists(DomainId id) => Xen.DomainExists(id);

    /// <summary>The cross-domain use-after-free detector: every grant-mapped frame freed, scrubbed or
    /// handed out, and every reference taken on a page whose count is 0, with both domains, the frame, the
    /// refs and the call (<see cref="IsolationMonitor"/>). Assert that <see cref="IsolationMonitor.Hazards"/>
    /// is empty after a test, next to <see cref="CheckLeaks"/>.</summary>
    public IsolationMonitor Isolation => Xen.Isolation;

    /// <summary>The isolation findings as lines (empty when none): <see cref="Isolation"/>'s check.</summary>
    public IReadOnlyList<string> CheckIsolation() => Xen.Isolation.Check();

    /// <summary>Every leak finding of every kernel and of the hypervisor: open fds, mappings, pages, grant
    /// refs and entries, maptrack handles, event channels, zombies. Empty when clean.</summary>
    public IReadOnlyList<string> CheckLeaks()
    {
        var problems = new List<string>();
        lock (_guests)
            foreach (var g in _guests) problems.AddRange(g.Kernel.CheckLeaks());
        problems.AddRange(Xen.CheckLeaks());
        int connections = Xenstore.ConnectionCount;
        if (connections != 0) problems.Add($"xenstore: {connections} connection(s) open");
        return problems;
    }

    /// <summary>Destroys every domain and frees machine memory.</summary>
    public void Dispose() => Xen.Dispose();
}
