using System.Buffers.Binary;
using XenShare.Abi;

namespace XenShare.Api;

/// <summary>An open <c>/dev/xen/evtchn</c>: bind ports, notify, and wait for pending events.</summary>
public sealed class EventChannels : IDisposable
{
    /// <summary>The device path.</summary>
    public const string Path = "/dev/xen/evtchn";

    private int _fd;

    private EventChannels(IGuestProcess process, int fd)
    {
        Process = process;
        _fd = fd;
    }

    /// <summary>Opens evtchn in <paramref name="process"/>.</summary>
    public static EventChannels Open(IGuestProcess process)
    {
        ArgumentNullException.ThrowIfNull(process);
        return new EventChannels(process, ErrnoMapper.Check(process.Open(Path, Posix.O_RDWR | Posix.O_CLOEXEC), "open " + Path));
    }

    /// <summary>The process.</summary>
    public IGuestProcess Process { get; }

    /// <summary>The evtchn fd.</summary>
    public int Fd => _fd >= 0 ? _fd : throw new ObjectDisposedException(nameof(EventChannels));

    private int Call(uint request, Span<byte> arg, string name) => ErrnoMapper.Check(Process.Ioctl(Fd, request, arg), name);

    /// <summary>BIND_UNBOUND_PORT: a local port that <paramref name="remote"/> may bind.</summary>
    public EventPort BindUnbound(DomainId remote)
    {
        var op = new ioctl_evtchn_bind_unbound_port { remote_domain = remote.Value };
        return new((uint)Call(EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, IoctlArg.Of(ref op), "IOCTL_EVTCHN_BIND_UNBOUND_PORT"));
    }

    /// <summary>BIND_INTERDOMAIN: connects to a remote unbound port.</summary>
    public EventPort BindInterdomain(DomainId remote, EventPort remotePort)
    {
        var op = new ioctl_evtchn_bind_interdomain { remote_domain = remote.Value, remote_port = remotePort.Value };
        return new((uint)Call(EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, IoctlArg.Of(ref op), "IOCTL_EVTCHN_BIND_INTERDOMAIN"));
    }

    /// <summary>BIND_VIRQ.</summary>
    public EventPort BindVirq(uint virq)
    {
        var op = new ioctl_evtchn_bind_virq { virq = virq };
        return new((uint)Call(EvtChnIoctl.IOCTL_EVTCHN_BIND_VIRQ, IoctlArg.Of(ref op), "IOCTL_EVTCHN_BIND_VIRQ"));
    }

    /// <summary>NOTIFY: signals the remote end.</summary>
    public void Notify(EventPort port)
    {
        var op = new ioctl_evtchn_notify { port = port.Value };
        Call(EvtChnIoctl.IOCTL_EVTCHN_NOTIFY, IoctlArg.Of(ref op), "IOCTL_EVTCHN_NOTIFY");
    }

    /// <summary>UNBIND.</summary>
    public void Unbind(EventPort port)
    {
        var op = new ioctl_evtchn_unbind { port = port.Value };
        Call(EvtChnIoctl.IOCTL_EVTCHN_UNBIND, IoctlArg.Of(ref op), "IOCTL_EVTCHN_UNBIND");
    }

    /// <summary>Unmasks a port (write()), so its next event is delivered.</summary>
    public void Unmask(EventPort port)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, port.Value);
        ErrnoMapper.Check(Process.Write(Fd, b), "write(evtchn)");
    }

    /// <summary>Waits up to <paramref name="timeout"/> for a pending port (poll + read); null on timeout.
    /// The port stays masked until <see cref="Unmask"/>.</summary>
    public EventPort? WaitPending(TimeSpan timeout)
    {
        Span<PollFd> fds = stackalloc PollFd[1];
        fds[0] = new PollFd { Fd = Fd, Events = Posix.POLLIN };
        int ms = timeout == Timeout.InfiniteTimeSpan ? -1 : (int)Math.Min(int.MaxValue, Math.Ceiling(timeout.TotalMilliseconds));
        int n = ErrnoMapper.Check(Process.Poll(fds, ms), "poll(evtchn)");
        if (n == 0 || (fds[0].REvents & Posix.POLLIN) == 0) return null;
        Span<byte> buf = stackalloc byte[4];
        long r = ErrnoMapper.Check(Process.Read(Fd, buf), "read(evtchn)");
        return r == 4 ? new EventPort(BinaryPrimitives.ReadUInt32LittleEndian(buf)) : null;
    }

    /// <summary>Closes evtchn (its ports are unbound).</summary>
    public void Dispose()
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0) Process.Close(fd);
    }
}
