using XenShare.Api;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Cli.Bench;

/// <summary>
/// An emulated host for the dma-buf benchmarks: one or more domUs share pages with the backend's domain through
/// gntalloc (dom0, or with <c>driverDomain</c> a display driver domain that is not direct-mapped, whose display
/// reaches a guest's scattered pages in place, DM05); its processes export them with gntdev. Sized for 100 000
/// live exports (P6).
/// </summary>
internal sealed class DmaBufFixture : IDisposable
{
    private readonly List<(IGuestProcess Process, GrantSharer Sharer, SharedPages Pages)> _shares = new();
    private readonly List<IDisposable> _owned = new();

    public DmaBufFixture(int sharedPagesPerGuest, int guests = 1, int dom0Unpopulated = 140_000, int maxFds = 140_000, bool driverDomain = false)
    {
        var kernel = new KernelOptions { MaxFdsPerProcess = maxFds, GntAllocLimit = 65536 };
        var backendConfig = new DomainConfig { RamPages = 16384, UnpopulatedPages = dom0Unpopulated };
        Host = new EmulatedHost(262144, driverDomain ? new DomainConfig() : backendConfig, kernel);
        Backend = driverDomain ? Host.CreateGuest(backendConfig, kernel) : Host.Dom0;
        for (int g = 0; g < guests; g++)
        {
            var guest = Host.CreateGuest(new DomainConfig { RamPages = Math.Max(4096, sharedPagesPerGuest + 1024) }, kernel);
            Guests.Add(guest);
            var p = guest.StartProcess();
            var sharer = GrantSharer.Open(p);
            var pages = sharer.Share(Backend.Id, sharedPagesPerGuest, writable: true);
            _shares.Add((p, sharer, pages));
        }
    }

    /// <summary>The domain the guests share with: dom0, or the driver domain.</summary>
    public EmulatedGuest Backend { get; }

    /// <summary>A new process in the backend's domain (owned by the fixture).</summary>
    public IGuestProcess StartBackendProcess()
    {
        var p = Backend.StartProcess();
        _owned.Add(p);
        return p;
    }

    public EmulatedHost Host { get; }

    public List<EmulatedGuest> Guests { get; } = new();

    /// <summary>The refs domU <paramref name="guest"/> granted to dom0.</summary>
    public GrantRef[] Refs(int guest = 0) => _shares[guest].Pages.Refs.ToArray();

    /// <summary>A new dom0 process (owned by the fixture).</summary>
    public IGuestProcess StartDom0Process()
    {
        var p = Host.Dom0.StartProcess();
        _owned.Add(p);
        return p;
    }

    public void Dispose()
    {
        foreach (var d in _owned) d.Dispose();
        foreach (var (p, sharer, pages) in _shares)
        {
            pages.Dispose();
            sharer.Dispose();
            p.Dispose();
        }
        var leaks = Host.CheckLeaks().Concat(Host.CheckIsolation()).ToList();
        Host.Dispose();
        if (leaks.Count != 0) throw new InvalidOperationException("benchmark leaked: " + string.Join("; ", leaks));
    }
}
