using XenShare.Abi;

namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// The event-channel hypercalls of one host (EVTCHNOP_alloc_unbound, bind_interdomain, bind_virq, close,
/// send, unmask) over every domain's <see cref="EventChannelTable"/>, with Xen's results as -errno.
/// Reached through <see cref="XenHost.EventChannels"/>.
/// </summary>
/// <remarks>
/// Lock: <c>_lock</c>, one for every domain's ports (interdomain operations touch two tables at once; one
/// lock keeps that simple and deadlock-free). It is taken alone: the domain lookups made under it are
/// lock-free reads, and upcalls into kernels (<see cref="IDomainSink.OnEvent"/>) are made after releasing
/// it.
/// </remarks>
public sealed class EventChannelOps
{
    private readonly object _lock = new();
    private readonly XenHost _host;

    internal EventChannelOps(XenHost host) => _host = host;

    /// <summary>EVTCHNOP_alloc_unbound: a port that <paramref name="remote"/> may bind. Returns the port or -errno.</summary>
    public int AllocUnbound(Domain caller, DomainId remote)
    {
        ArgumentNullException.ThrowIfNull(caller);
        if (remote.Value != GrantTableConstants.DOMID_SELF && !_host.TryGetDomain(remote, out _)) return -Errno.ESRCH;
        lock (_lock)
        {
            int p = caller.Events.AllocatePort();
            if (p < 0) return -Errno.ENOSPC;
            ref var port = ref caller.Events.Ports[p];
            port = default;
            port.State = EventChannelTable.PortState.Unbound;
            port.RemoteDomain = remote.Value == GrantTableConstants.DOMID_SELF ? caller.Id.Value : remote.Value;
            caller.Events.BoundCount++;
            return p;
        }
    }

    /// <summary>EVTCHNOP_bind_interdomain: connects a new local port to <paramref name="remotePort"/> of
    /// <paramref name="remoteDomain"/>, which must be unbound and offered to the caller.</summary>
    public int BindInterdomain(Domain caller, DomainId remoteDomain, uint remotePort)
    {
        ArgumentNullException.ThrowIfNull(caller);
        var rid = remoteDomain.Value == GrantTableConstants.DOMID_SELF ? caller.Id : remoteDomain;
        if (!_host.TryGetDomain(rid, out var remote)) return -Errno.ESRCH;
        lock (_lock)
        {
            if (remotePort == 0 || remotePort >= EventChannelTable.MaxPorts) return -Errno.EINVAL;
            ref var rp = ref remote.Events.Ports[remotePort];
            if (rp.State != EventChannelTable.PortState.Unbound || rp.RemoteDomain != caller.Id.Value) return -Errno.EINVAL;
            int p = caller.Events.AllocatePort();
            if (p < 0) return -Errno.ENOSPC;
            ref var lp = ref caller.Events.Ports[p];
            lp = default;
            lp.State = EventChannelTable.PortState.Interdomain;
            lp.RemoteDomain = rid.Value;
            lp.RemotePort = remotePort;
            caller.Events.BoundCount++;
            rp.State = EventChannelTable.PortState.Interdomain;
            rp.RemotePort = (uint)p;
            return p;
        }
    }

    /// <summary>EVTCHNOP_bind_virq (virq &lt; 24; one port per virq).</summary>
    public int BindVirq(Domain caller, uint virq)
    {
        ArgumentNullException.ThrowIfNull(caller);
        if (virq >= 24) return -Errno.EINVAL;
        lock (_lock)
        {
            for (int i = 1; i < EventChannelTable.MaxPorts; i++)
                if (caller.Events.Ports[i].State == EventChannelTable.PortState.Virq && caller.Events.Ports[i].Virq == virq) return -Errno.EEXIST;
            int p = caller.Events.AllocatePort();
            if (p < 0) return -Errno.ENOSPC;
            ref var lp = ref caller.Events.Ports[p];
            lp = default;
            lp.State = EventChannelTable.PortState.Virq;
            lp.Virq = virq;
            caller.Events.BoundCount++;
            return p;
        }
    }

    /// <summary>EVTCHNOP_close. An interdomain peer's port falls back to unbound.</summary>
    public int Close(Domain caller, uint port)
    {
        ArgumentNullException.ThrowIfNull(caller);
        lock (_lock)
        {
            if (port == 0 || port >= EventChannelTable.MaxPorts || caller.Events.Ports[port].State == EventChannelTable.PortState.Free) return -Errno.EINVAL;
            ClosePortLocked(caller, port);
            return 0;
        }
    }

    /// <summary>Closes every bound port of a domain being destroyed.</summary>
    internal void CloseAll(Domain d)
    {
        lock (_lock)
            for (int p = 1; p < EventChannelTable.MaxPorts; p++)
                if (d.Events.Ports[p].State != EventChannelTable.PortState.Free) ClosePortLocked(d, (uint)p);
    }

    private void ClosePortLocked(Domain d, uint port)
    {
        ref var p = ref d.Events.Ports[port];
        if (p.State == EventChannelTable.PortState.Interdomain && _host.TryGetDomain(new DomainId(p.RemoteDomain), out var remote))
        {
            ref var rp = ref remote.Events.Ports[p.RemotePort];
            if (rp.State == EventChannelTable.PortState.Interdomain && rp.RemoteDomain == d.Id.Value && rp.RemotePort == port)
            {
                rp.State = EventChannelTable.PortState.Unbound;
                rp.RemotePort = 0;
            }
        }
        p = default;
        d.Events.BoundCount--;
    }

    /// <summary>EVTCHNOP_send: marks the peer's port pending and, unless it is masked, masks it and makes
    /// an upcall (the Linux evtchn handler disables the irq on delivery; an unmask re-enables it).</summary>
    public int Send(Domain caller, uint port)
    {
        ArgumentNullException.ThrowIfNull(caller);
        Domain? target = null;
        uint targetPort = 0;
        lock (_lock)
        {
            if (port == 0 || port >= EventChannelTable.MaxPorts) return -Errno.EINVAL;
            ref var p = ref caller.Events.Ports[port];
            switch (p.State)
            {
                case EventChannelTable.PortState.Free: return -Errno.EINVAL;
                case EventChannelTable.PortState.Interdomain:
                    if (_host.TryGetDomain(new DomainId(p.RemoteDomain), out var remote) && RaiseLocked(remote, p.RemotePort)) { target = remote; targetPort = p.RemotePort; }
                    break;
                case EventChannelTable.PortState.Virq:
                    if (RaiseLocked(caller, port)) { target = caller; targetPort = port; }
                    break;
                default: break; // unbound: nobody listens; Xen drops it
            }
        }
        target?.Sink?.OnEvent(new EventPort(targetPort));
        return 0;
    }

    /// <summary>Raises a virtual IRQ in a domain (for tests and tools).</summary>
    public void RaiseVirq(Domain domain, uint virq)
    {
        ArgumentNullException.ThrowIfNull(domain);
        uint port = 0;
        lock (_lock)
        {
            for (int i = 1; i < EventChannelTable.MaxPorts; i++)
                if (domain.Events.Ports[i].State == EventChannelTable.PortState.Virq && domain.Events.Ports[i].Virq == virq)
                {
                    if (RaiseLocked(domain, (uint)i)) port = (uint)i;
                    break;
                }
        }
        if (port != 0) domain.Sink?.OnEvent(new EventPort(port));
    }

    private static bool RaiseLocked(Domain d, uint port)
    {
        ref var p = ref d.Events.Ports[port];
        if (p.Masked) { p.Pending = true; return false; }
        p.Masked = true;
        p.Pending = false;
        return true;
    }

    /// <summary>EVTCHNOP_unmask: re-delivers a pending event.</summary>
    public void Unmask(Domain caller, uint port)
    {
        ArgumentNullException.ThrowIfNull(caller);
        bool deliver = false;
        lock (_lock)
        {
            if (port == 0 || port >= EventChannelTable.MaxPorts) return;
            ref var p = ref caller.Events.Ports[port];
            p.Masked = false;
            if (p.Pending && p.State != EventChannelTable.PortState.Free) deliver = RaiseLocked(caller, port);
        }
        if (deliver) caller.Sink?.OnEvent(new EventPort(port));
    }

    /// <summary>Whether a port of a domain is bound (not free).</summary>
    public bool IsBound(Domain domain, uint port)
    {
        ArgumentNullException.ThrowIfNull(domain);
        lock (_lock)
            return port != 0 && port < EventChannelTable.MaxPorts && domain.Events.Ports[port].State != EventChannelTable.PortState.Free;
    }
}
