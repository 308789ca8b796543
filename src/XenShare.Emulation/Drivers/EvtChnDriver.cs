using System.Buffers.Binary;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// The evtchn driver of one kernel (<c>/dev/xen/evtchn</c>, EV01-EV02): binds ports to an open file,
/// queues delivered ports in a ring that read() drains (blocking unless O_NONBLOCK), write() unmasks,
/// poll() reports POLLIN when the ring is not empty.
/// </summary>
/// <remarks>Lock: each file's own lock guards its ports and ring; readers wait on it. Upcalls arrive
/// from the hypervisor with no hypervisor lock held; the poll queue is woken after the file lock is
/// released.</remarks>
internal sealed class EvtChnDriver
{
    /// <summary>The device path.</summary>
    public const string Path = "/dev/xen/evtchn";

    /// <summary>Ring size in ports (one page of u32).</summary>
    public const int RingSize = 1024;

    private readonly GuestKernel _kernel;
    private int _openFiles;

    public EvtChnDriver(GuestKernel kernel)
    {
        _kernel = kernel;
        kernel.RegisterDevice(Path, (_, _) =>
        {
            Interlocked.Increment(ref _openFiles);
            return new EvtChnFile(this);
        });
        kernel.RegisterLeakCheck(() => Volatile.Read(ref _openFiles) == 0 ? [] : [$"{_kernel.Domain}: {_openFiles} evtchn file(s) open"]);
    }

    private sealed class EvtChnFile(EvtChnDriver driver) : KernelFile, IEventHandler
    {
        private readonly object _lock = new();
        private readonly HashSet<uint> _ports = new();
        private readonly uint[] _ring = new uint[RingSize];
        private int _head, _count;
        private bool _overflow;
        private int _restrictDomid = -1;
        private bool _released;

        private GuestKernel Kernel => driver._kernel;
        private XenHost Host => driver._kernel.Host;
        private Domain Domain => driver._kernel.Domain;

        public override int Ioctl(GuestProcess caller, uint request, Span<byte> arg)
        {
            if (request == EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT)
            {
                if (arg.Length < 4) return -Errno.EFAULT;
                uint remote = MemoryMarshal.Read<uint>(arg);
                if (_restrictDomid >= 0) return -Errno.EACCES;   // Linux refuses any unbound port once restricted
                return Bound(Host.EventChannels.AllocUnbound(Domain, new DomainId((ushort)remote)));
            }
            if (request == EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN)
            {
                if (arg.Length < 8) return -Errno.EFAULT;
                var op = MemoryMarshal.Read<ioctl_evtchn_bind_interdomain>(arg);
                if (_restrictDomid >= 0 && op.remote_domain != (uint)_restrictDomid) return -Errno.EACCES;
                return Bound(Host.EventChannels.BindInterdomain(Domain, new DomainId((ushort)op.remote_domain), op.remote_port));
            }
            if (request == EvtChnIoctl.IOCTL_EVTCHN_BIND_VIRQ)
            {
                if (arg.Length < 4) return -Errno.EFAULT;
                if (_restrictDomid >= 0) return -Errno.EACCES;
                return Bound(Host.EventChannels.BindVirq(Domain, MemoryMarshal.Read<uint>(arg)));
            }
            if (request == EvtChnIoctl.IOCTL_EVTCHN_UNBIND || request == EvtChnIoctl.IOCTL_EVTCHN_NOTIFY)
            {
                if (arg.Length < 4) return -Errno.EFAULT;
                uint port = MemoryMarshal.Read<uint>(arg);
                if (port >= EventChannelTable.MaxPorts) return -Errno.EINVAL;                 // EV02
                lock (_lock) if (!_ports.Contains(port)) return -Errno.ENOTCONN;
                if (request == EvtChnIoctl.IOCTL_EVTCHN_NOTIFY) return Host.EventChannels.Send(Domain, port);
                Unbind(port);
                return 0;
            }
            if (request == EvtChnIoctl.IOCTL_EVTCHN_RESET)
            {
                lock (_lock) { _head = 0; _count = 0; _overflow = false; }
                return 0;
            }
            if (request == EvtChnIoctl.IOCTL_EVTCHN_RESTRICT_DOMID)
            {
                if (arg.Length < 2) return -Errno.EFAULT;
                ushort d = MemoryMarshal.Read<ushort>(arg);
                lock (_lock)
                {
                    if (_restrictDomid >= 0) return -Errno.EACCES;                       // only once
                    if (d == 0 || d >= GrantTableConstants.DOMID_SELF) return -Errno.EINVAL; // DOMID_FIRST_RESERVED
                    _restrictDomid = d;
                }
                return 0;
            }
            return -Errno.ENOSYS;                                                                // EV02: not ENOTTY
        }

        private int Bound(int port)
        {
            if (port < 0) return port;
            lock (_lock) _ports.Add((uint)port);
            Kernel.BindEventHandler((uint)port, this);
            return port;
        }

        private void Unbind(uint port)
        {
            lock (_lock) if (!_ports.Remove(port)) return;
            Kernel.UnbindEventHandler(port);
            Host.EventChannels.Close(Domain, port);
        }

        public void OnEvent(EventPort port)
        {
            lock (_lock)
            {
                if (_released || !_ports.Contains(port.Value)) return;
                if (_count < RingSize) { _ring[(_head + _count) % RingSize] = port.Value; _count++; }
                else _overflow = true;
                Monitor.PulseAll(_lock);
            }
            Kernel.PollQueue.Wake();
        }

        public override long Read(GuestProcess caller, Span<byte> buffer)
        {
            int want = buffer.Length / 4;
            if (want == 0) return 0;
            lock (_lock)
            {
                while (_count == 0 && !_overflow)
                {
                    if ((OpenFlags & Posix.O_NONBLOCK) != 0) return -Errno.EAGAIN;
                    if (Kernel.IsHalted) return -Errno.EIO;   // the domain was destroyed (GuestKernel.Halt)
                    // Unregister, not Dispose: Dispose would wait for a running callback, which needs this lock.
                    var halt = Kernel.HaltToken.UnsafeRegister(static o => { lock (o!) Monitor.PulseAll(o); }, _lock);
                    try { if (!halt.Token.IsCancellationRequested) Monitor.Wait(_lock); }
                    finally { halt.Unregister(); }
                }
                if (_overflow) return -Errno.EFBIG;
                int n = Math.Min(want, _count);
                for (int i = 0; i < n; i++)
                    BinaryPrimitives.WriteUInt32LittleEndian(buffer.Slice(i * 4, 4), _ring[(_head + i) % RingSize]);
                _head = (_head + n) % RingSize;
                _count -= n;
                return n * 4L;
            }
        }

        public override long Write(GuestProcess caller, ReadOnlySpan<byte> buffer)
        {
            int n = buffer.Length / 4;
            for (int i = 0; i < n; i++)
            {
                uint port = BinaryPrimitives.ReadUInt32LittleEndian(buffer.Slice(i * 4, 4));
                bool mine;
                lock (_lock) mine = port < EventChannelTable.MaxPorts && _ports.Contains(port);
                if (mine) Host.EventChannels.Unmask(Domain, port);
            }
            return n * 4L;
        }

        public override short Poll()
        {
            lock (_lock)
                return (short)(Posix.POLLOUT | (_count > 0 ? Posix.POLLIN : 0) | (_overflow ? Posix.POLLERR : 0));
        }

        protected override void Release()
        {
            uint[] ports;
            lock (_lock)
            {
                _released = true;
                ports = _ports.ToArray();
                _ports.Clear();
                Monitor.PulseAll(_lock);
            }
            foreach (var p in ports)
            {
                Kernel.UnbindEventHandler(p);
                Host.EventChannels.Close(Domain, p);
            }
            Interlocked.Decrement(ref driver._openFiles);
        }
    }
}
