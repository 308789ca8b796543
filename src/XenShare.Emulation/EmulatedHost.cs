using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Emulation;

/// <summary>
/// The embedded default backend: an in-process emulated Xen host with dom0 booted, on which more
/// guests can be created. Every guest runs an emulated Linux kernel with gntdev, gntalloc and evtchn,
/// faithful at the ioctl level.
/// </summary>
public sealed class EmulatedHost : IDisposable
{
    private readonly List<EmulatedGuest> _guests = new();

    /// <summary>Creates a host with <paramref name="machineFrames"/> frames of machine memory and dom0.</summary>
    public EmulatedHost(int machineFrames = 262144, DomainConfig? dom0 = null, KernelOptions? dom0Kernel = null)
    {
        Xen = new XenHost(machineFrames);
        Dom0 = CreateGuest((dom0 ?? new DomainConfig()) with { Id = DomainId.Dom0 }, dom0Kernel);
    }

    /// <summary>The hypervisor.</summary>
    public XenHost Xen { get; }

    /// <summary>dom0.</summary>
    public EmulatedGuest Dom0 { get; }

    /// <summary>Creates and boots a guest.</summary>
    public EmulatedGuest CreateGuest(DomainConfig? config = null, KernelOptions? kernel = null)
    {
        var d = Xen.CreateDomain(config ?? new DomainConfig());
        var g = new EmulatedGuest(Xen, d, kernel ?? new KernelOptions());
        lock (_guests) _guests.Add(g);
        return g;
    }

    /// <summary>Destroys a guest's domain (its processes should have exited).</summary>
    public void DestroyGuest(EmulatedGuest guest)
    {
        ArgumentNullException.ThrowIfNull(guest);
        lock (_guests) if (!_guests.Remove(guest)) return;
        Xen.DestroyDomain(guest.Id);
    }

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
        return problems;
    }

    /// <summary>Destroys every domain and frees machine memory.</summary>
    public void Dispose() => Xen.Dispose();
}
