namespace XenShare.Emulation.Hypervisor;

/// <summary>
/// A domain's event-channel ports (2-level ABI: <see cref="MaxPorts"/> ports, port 0 never used). Each port
/// has a state, a pending bit and a mask bit, as in Xen's shared info.
/// </summary>
/// <remarks>Not locked itself: every access goes through <see cref="EventChannelOps"/>, which holds the
/// host-wide event lock (interdomain operations touch two tables at once; one lock keeps that simple and
/// deadlock-free).</remarks>
public sealed class EventChannelTable
{
    /// <summary>Ports per domain (EVTCHN_2L_NR_CHANNELS on 64-bit).</summary>
    public const int MaxPorts = 4096;

    internal enum PortState : byte { Free, Unbound, Interdomain, Virq }

    internal struct Port
    {
        public PortState State;
        public bool Pending;
        public bool Masked;
        public ushort RemoteDomain;
        public uint RemotePort;
        public uint Virq;
    }

    internal readonly Port[] Ports = new Port[MaxPorts];

    /// <summary>Number of ports in use (leak checks).</summary>
    public int BoundCount { get; internal set; }

    internal int AllocatePort()
    {
        for (int p = 1; p < MaxPorts; p++)
            if (Ports[p].State == PortState.Free) return p;
        return -1;
    }
}
