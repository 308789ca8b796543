using XenShare.Emulation.Drivers;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Emulation;

/// <summary>A domain of the emulated host with its kernel and drivers (gntdev, gntalloc, evtchn, xenbus).</summary>
public sealed class EmulatedGuest
{
    internal EmulatedGuest(XenHost host, Domain domain, KernelOptions options, Xenstore.XenstoreDaemon xenstore)
    {
        Domain = domain;
        Kernel = new GuestKernel(host, domain, options);
        GntDev = new GntDevDriver(Kernel);
        _ = new GntAllocDriver(Kernel);
        _ = new EvtChnDriver(Kernel);
        Xenbus = new XenbusDriver(Kernel, xenstore);
        XenShare.Emulation.Kernel.DmaBuf.SystemHeap.Register(Kernel);
    }

    /// <summary>The domain.</summary>
    public Domain Domain { get; }

    /// <summary>The domain id.</summary>
    public DomainId Id => Domain.Id;

    /// <summary>The guest kernel.</summary>
    public GuestKernel Kernel { get; }

    internal GntDevDriver GntDev { get; }

    internal XenbusDriver Xenbus { get; }

    /// <summary>Plugs a display controller into this domain (hardware the platform has: in a direct-mapped domain
    /// it sees machine addresses through the Xen swiotlb, in a driver domain guest-physical addresses behind the
    /// SMMU) and returns its device path, <c>/dev/xenshare/&lt;name&gt;</c>; processes reach it only through the
    /// seam (<see cref="XenShare.Devices.DisplayDeviceIoctl"/>, the typed <c>XenShare.Api.DisplayDevice</c>).</summary>
    /// <exception cref="InvalidOperationException">A device of that name exists.</exception>
    public string AddDisplay(string name = "display0")
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        lock (_displays)
        {
            if (_displays.ContainsKey(name) || _iommus.ContainsKey(name)) throw new InvalidOperationException($"{Domain} already has a device {name}");
            var driver = new DisplayDriver(Kernel, name);
            _displays.Add(name, driver);
            return driver.Path;
        }
    }

    private readonly Dictionary<string, DisplayDriver> _displays = new(StringComparer.Ordinal);

    /// <summary>Plugs a device with an MMU of its own into this domain (a GPU, a video engine behind an IOMMU its
    /// driver programs) and returns its device path, <c>/dev/xenshare/&lt;name&gt;</c>; processes reach it through
    /// the seam (<see cref="XenShare.Devices.IommuDeviceIoctl"/>, the typed <c>XenShare.Api.IommuDevice</c>).</summary>
    /// <exception cref="InvalidOperationException">A device of that name exists.</exception>
    public string AddIommuDevice(string name = "iommu0")
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        lock (_displays)
        {
            if (_displays.ContainsKey(name) || _iommus.ContainsKey(name)) throw new InvalidOperationException($"{Domain} already has a device {name}");
            var driver = new IommuDriver(Kernel, name);
            _iommus.Add(name, driver);
            return driver.Path;
        }
    }

    private readonly Dictionary<string, IommuDriver> _iommus = new(StringComparer.Ordinal);

    /// <summary>The display driver of <paramref name="name"/> (tests).</summary>
    internal DisplayDriver Display(string name = "display0")
    {
        lock (_displays) return _displays[name];
    }

    /// <summary>Starts a process in this guest: an <see cref="IGuestProcess"/> on the emulated kernel.</summary>
    public GuestProcess StartProcess() => Kernel.StartProcess();

    /// <summary>"dom1 (Arm64)".</summary>
    public override string ToString() => Domain.ToString();
}
