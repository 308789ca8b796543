using System.Buffers.Binary;
using XenShare.Abi;

namespace XenShare.Api;

/// <summary>An open <c>/dev/xen/evtchn</c>: bind ports, notify, and wait for pending events.</summary>
public sealed class EventChannels : IDisposable
{
    /// <summary>The device path.</summary>
    public const string Path = "/dev/xen/evtchn";

    private readonly GuestFdHandle _handle;

    private EventChannels(IGuestProcess process, int fd)
    {
        Process = process;
        _handle = new GuestFdHandle(process, fd, nameof(EventChannels));
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
    /// <exception cref="ObjectDisposedException">Disposed.</exception>
    public int Fd => _handle.Fd;

    /// <summary>The handle that owns the fd (closed by Dispose or, when forgotten, by the finalizer).</summary>
    public GuestFdHandle Handle => _handle;

    private int Call(uint request, Span<byte> arg, string name) => ErrnoMapper.Check(_handle.Ioctl(request, arg), name);

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
        using var fd = _handle.Lease();
        ErrnoMapper.Check(Process.Write(fd.Fd, b), "write(evtchn)");
    }

    /// <summary>Waits up to <paramref name="timeout"/> for a pending port (poll + read); null on timeout.
    /// <see cref="Timeout.InfiniteTimeSpan"/> waits until an event. The port stays masked until
    /// <see cref="Unmask"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative timeout other than infinite.</exception>
    public EventPort? WaitPending(TimeSpan timeout) => WaitSlice(ToMs(timeout));

    /// <summary>Waits asynchronously for a pending port; null on timeout. <see cref="Timeout.InfiniteTimeSpan"/>
    /// waits until an event. The wait runs on a thread of its own in poll(2) slices of at most
    /// <see cref="CancellationSlice"/>, so cancellation is seen within one slice and then ends the wait with
    /// <see cref="OperationCanceledException"/>; an event read before that is never lost (it is returned).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative timeout other than infinite.</exception>
    /// <exception cref="ObjectDisposedException">The channels are disposed (the task faults with it when they are
    /// disposed during the wait: the next slice finds them gone).</exception>
    public Task<EventPort?> WaitPendingAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        int total = ToMs(timeout);
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<EventPort?>(cancellationToken);
        ObjectDisposedException.ThrowIf(_handle.IsDisposed, this);
        return Task.Factory.StartNew(() =>
        {
            long deadline = total < 0 ? long.MaxValue : Environment.TickCount64 + total;
            int slice = (int)CancellationSlice.TotalMilliseconds;
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                long left = deadline == long.MaxValue ? slice : Math.Max(0, deadline - Environment.TickCount64);
                if (WaitSlice((int)Math.Min(slice, left)) is { } port) return port;
                if (deadline != long.MaxValue && Environment.TickCount64 >= deadline) return (EventPort?)null;
            }
        }, cancellationToken, TaskCreationOptions.LongRunning | TaskCreationOptions.DenyChildAttach, TaskScheduler.Default);
    }

    /// <summary>The longest poll(2) of <see cref="WaitPendingAsync"/> between two looks at its cancellation token.</summary>
    public static TimeSpan CancellationSlice { get; } = TimeSpan.FromMilliseconds(50);

    private EventPort? WaitSlice(int ms)
    {
        using var fd = _handle.Lease();
        Span<PollFd> fds = stackalloc PollFd[1];
        fds[0] = new PollFd { Fd = fd.Fd, Events = Posix.POLLIN };
        int n = ErrnoMapper.Check(Process.Poll(fds, ms), "poll(evtchn)");
        if (n == 0 || (fds[0].REvents & Posix.POLLIN) == 0) return null;
        Span<byte> buf = stackalloc byte[4];
        long r = ErrnoMapper.Check(Process.Read(fd.Fd, buf), "read(evtchn)");
        return r == 4 ? new EventPort(BinaryPrimitives.ReadUInt32LittleEndian(buf)) : null;
    }

    private static int ToMs(TimeSpan timeout)
    {
        if (timeout == Timeout.InfiniteTimeSpan) return -1;
        ArgumentOutOfRangeException.ThrowIfLessThan(timeout, TimeSpan.Zero);
        return (int)Math.Min(int.MaxValue, Math.Ceiling(timeout.TotalMilliseconds));
    }

    /// <summary>Closes evtchn (its ports are unbound).</summary>
    public void Dispose()
    {
        _handle.Dispose();
    }
}
