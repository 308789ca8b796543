using System.Buffers.Binary;
using System.Runtime.InteropServices;
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

    private int Call(uint request, uint a, uint b, string name)
    {
        Span<byte> arg = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(arg, a);
        BinaryPrimitives.WriteUInt32LittleEndian(arg[4..], b);
        return ErrnoMapper.Check(Process.Ioctl(Fd, request, arg), name);
    }

    /// <summary>BIND_UNBOUND_PORT: a local port that <paramref name="remote"/> may bind.</summary>
    public EventPort BindUnbound(DomainId remote) =>
        new((uint)Call(EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, remote.Value, 0, "IOCTL_EVTCHN_BIND_UNBOUND_PORT"));

    /// <summary>BIND_INTERDOMAIN: connects to a remote unbound port.</summary>
    public EventPort BindInterdomain(DomainId remote, EventPort remotePort) =>
        new((uint)Call(EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, remote.Value, remotePort.Value, "IOCTL_EVTCHN_BIND_INTERDOMAIN"));

    /// <summary>BIND_VIRQ.</summary>
    public EventPort BindVirq(uint virq) => new((uint)Call(EvtChnIoctl.IOCTL_EVTCHN_BIND_VIRQ, virq, 0, "IOCTL_EVTCHN_BIND_VIRQ"));

    /// <summary>NOTIFY: signals the remote end.</summary>
    public void Notify(EventPort port) => Call(EvtChnIoctl.IOCTL_EVTCHN_NOTIFY, port.Value, 0, "IOCTL_EVTCHN_NOTIFY");

    /// <summary>UNBIND.</summary>
    public void Unbind(EventPort port) => Call(EvtChnIoctl.IOCTL_EVTCHN_UNBIND, port.Value, 0, "IOCTL_EVTCHN_UNBIND");

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
