using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace XenShare.Abi;

// Mirror of <xen/evtchn.h> (one file per header, see docs/design.md).

/// <summary><c>struct ioctl_evtchn_bind_virq</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_evtchn_bind_virq
{
    /// <summary>The virtual IRQ number.</summary>
    public uint virq;
}

/// <summary><c>struct ioctl_evtchn_bind_interdomain</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_evtchn_bind_interdomain
{
    /// <summary>The remote domain.</summary>
    public uint remote_domain;
    /// <summary>The remote (unbound) port.</summary>
    public uint remote_port;
}

/// <summary><c>struct ioctl_evtchn_bind_unbound_port</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_evtchn_bind_unbound_port
{
    /// <summary>The domain allowed to bind the other end.</summary>
    public uint remote_domain;
}

/// <summary><c>struct ioctl_evtchn_unbind</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_evtchn_unbind
{
    /// <summary>The local port.</summary>
    public uint port;
}

/// <summary><c>struct ioctl_evtchn_notify</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_evtchn_notify
{
    /// <summary>The local port.</summary>
    public uint port;
}

/// <summary><c>struct ioctl_evtchn_restrict_domid</c>.</summary>
[StructLayout(LayoutKind.Sequential)]
public struct ioctl_evtchn_restrict_domid
{
    /// <summary>The only domain this file may bind to.</summary>
    public ushort domid;
}

/// <summary>Ioctl numbers of <c>xen/evtchn.h</c>.</summary>
public static class EvtChnIoctl
{
    /// <summary>IOCTL_EVTCHN_BIND_VIRQ.</summary>
    public static readonly uint IOCTL_EVTCHN_BIND_VIRQ = Ioc.Encode(Ioc.None, 'E', 0, Unsafe.SizeOf<ioctl_evtchn_bind_virq>());
    /// <summary>IOCTL_EVTCHN_BIND_INTERDOMAIN.</summary>
    public static readonly uint IOCTL_EVTCHN_BIND_INTERDOMAIN = Ioc.Encode(Ioc.None, 'E', 1, Unsafe.SizeOf<ioctl_evtchn_bind_interdomain>());
    /// <summary>IOCTL_EVTCHN_BIND_UNBOUND_PORT.</summary>
    public static readonly uint IOCTL_EVTCHN_BIND_UNBOUND_PORT = Ioc.Encode(Ioc.None, 'E', 2, Unsafe.SizeOf<ioctl_evtchn_bind_unbound_port>());
    /// <summary>IOCTL_EVTCHN_UNBIND.</summary>
    public static readonly uint IOCTL_EVTCHN_UNBIND = Ioc.Encode(Ioc.None, 'E', 3, Unsafe.SizeOf<ioctl_evtchn_unbind>());
    /// <summary>IOCTL_EVTCHN_NOTIFY.</summary>
    public static readonly uint IOCTL_EVTCHN_NOTIFY = Ioc.Encode(Ioc.None, 'E', 4, Unsafe.SizeOf<ioctl_evtchn_notify>());
    /// <summary>IOCTL_EVTCHN_RESET.</summary>
    public static readonly uint IOCTL_EVTCHN_RESET = Ioc.Encode(Ioc.None, 'E', 5, 0);
    /// <summary>IOCTL_EVTCHN_RESTRICT_DOMID.</summary>
    public static readonly uint IOCTL_EVTCHN_RESTRICT_DOMID = Ioc.Encode(Ioc.None, 'E', 6, Unsafe.SizeOf<ioctl_evtchn_restrict_domid>());
}
