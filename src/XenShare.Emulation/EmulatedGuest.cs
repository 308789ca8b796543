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

    /// <summary>Starts a process in this guest: an <see cref="IGuestProcess"/> on the emulated kernel.</summary>
    public GuestProcess StartProcess() => Kernel.StartProcess();

    /// <summary>"dom1 (Arm64)".</summary>
    public override string ToString() => Domain.ToString();
}
