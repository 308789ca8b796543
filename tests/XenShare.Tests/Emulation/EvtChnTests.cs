using System.Buffers.Binary;
using XenShare.Abi;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>evtchn device (EV01-EV02) through the byte-level ioctl/read/write/poll path.</summary>
public sealed class EvtChnTests : EmulatorTest
{
    private const int Generous = 30_000;

    private static int BindUnbound(GuestProcess p, int fd, ushort remote) =>
        p.Ioctl(fd, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Bytes(new ioctl_evtchn_bind_unbound_port { remote_domain = remote }));

    private static int BindInterdomain(GuestProcess p, int fd, ushort remote, uint port) =>
        p.Ioctl(fd, EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, Bytes(new ioctl_evtchn_bind_interdomain { remote_domain = remote, remote_port = port }));

    private static int Notify(GuestProcess p, int fd, uint port) =>
        p.Ioctl(fd, EvtChnIoctl.IOCTL_EVTCHN_NOTIFY, Bytes(new ioctl_evtchn_notify { port = port }));

    private static int Unbind(GuestProcess p, int fd, uint port) =>
        p.Ioctl(fd, EvtChnIoctl.IOCTL_EVTCHN_UNBIND, Bytes(new ioctl_evtchn_unbind { port = port }));

    private static byte[] Le(uint port)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, port);
        return b;
    }

    /// <summary>domU offers a port to dom0, dom0 binds it.</summary>
    private (int EvU, uint PortU, int Ev0, uint Port0) Connect(int flags = Posix.O_RDWR | Posix.O_NONBLOCK)
    {
        int evU = Open(PU, "/dev/xen/evtchn", flags);
        int portU = BindUnbound(PU, evU, Dom0.Id.Value);
        Assert.True(portU > 0, portU.ToString());
        int ev0 = Open(P0, "/dev/xen/evtchn", flags);
        int port0 = BindInterdomain(P0, ev0, DomU.Id.Value, (uint)portU);
        Assert.True(port0 > 0, port0.ToString());
        return (evU, (uint)portU, ev0, (uint)port0);
    }

    private void Disconnect((int EvU, uint PortU, int Ev0, uint Port0) c)
    {
        Assert.Equal(0, P0.Close(c.Ev0));
        Assert.Equal(0, PU.Close(c.EvU));
    }

    // ------------------------------------------------------------------ EV01

    [Fact]
    public void EV01_BindUnboundAndInterdomain_NotifyIsReadOnTheOtherSide()
    {
        var c = Connect();
        Assert.True(Xen.EventChannels.IsBound(DomU.Domain, c.PortU));
        Assert.True(Xen.EventChannels.IsBound(Dom0.Domain, c.Port0));

        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));
        var buf = new byte[16];
        Assert.Equal(4, PU.Read(c.EvU, buf));                     // one port, little-endian u32
        Assert.Equal(Le(c.PortU), buf[..4]);
        Assert.Null(ReadPort(P0, c.Ev0));                          // the sender gets nothing

        Assert.Equal(0, Notify(PU, c.EvU, c.PortU));               // the other direction
        Assert.Equal(c.Port0, ReadPort(P0, c.Ev0));
        Assert.Null(ReadPort(PU, c.EvU));
        Disconnect(c);
    }

    [Fact]
    public void EV01_ReadBufferShorterThanAPort_ReturnsZero()
    {
        var c = Connect();
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));
        Assert.Equal(0, PU.Read(c.EvU, new byte[3]));
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        Disconnect(c);
    }

    [Fact]
    public void EV01_WriteUnmasks_SecondNotifyDeliveredOnlyAfterUnmask()
    {
        var c = Connect();
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));               // masked since delivery: stays pending
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));
        Assert.Null(ReadPort(PU, c.EvU));
        Assert.Equal(4, PU.Write(c.EvU, Le(c.PortU)));             // unmask: the pending event arrives, once
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        Assert.Null(ReadPort(PU, c.EvU));
        Assert.Equal(4, PU.Write(c.EvU, Le(c.PortU)));             // unmask with nothing pending
        Assert.Null(ReadPort(PU, c.EvU));
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));               // unmasked: delivered at once
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        Disconnect(c);
    }

    [Fact]
    public void EV01_WriteOfPortsNotBoundToTheFile_IsIgnored()
    {
        var c = Connect();
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));
        var w = new byte[10];
        BinaryPrimitives.WriteUInt32LittleEndian(w, 4095);
        BinaryPrimitives.WriteUInt32LittleEndian(w.AsSpan(4), 100000);
        Assert.Equal(8, PU.Write(c.EvU, w));                       // whole ports only, unknown ones skipped
        Assert.Null(ReadPort(PU, c.EvU));
        Assert.Equal(4, PU.Write(c.EvU, Le(c.PortU)));
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        Disconnect(c);
    }

    [Fact]
    public void EV01_BindVirq_ReturnsPort_RaiseVirqDelivers()
    {
        int ev = Open(PU, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        int port = PU.Ioctl(ev, EvtChnIoctl.IOCTL_EVTCHN_BIND_VIRQ, Bytes(new ioctl_evtchn_bind_virq { virq = 7 }));
        Assert.True(port > 0, port.ToString());
        Assert.True(Xen.EventChannels.IsBound(DomU.Domain, (uint)port));
        Assert.Null(ReadPort(PU, ev));
        Xen.EventChannels.RaiseVirq(DomU.Domain, 7);
        Assert.Equal((uint)port, ReadPort(PU, ev));
        Xen.EventChannels.RaiseVirq(DomU.Domain, 7);
        Assert.Null(ReadPort(PU, ev));
        Assert.Equal(4, PU.Write(ev, Le((uint)port)));
        Assert.Equal((uint)port, ReadPort(PU, ev));
        Assert.Equal(0, Unbind(PU, ev, (uint)port));
        Assert.False(Xen.EventChannels.IsBound(DomU.Domain, (uint)port));
        Assert.Equal(0, PU.Close(ev));
    }

    [Fact]
    public void EV01_PollReportsPollin()
    {
        var c = Connect();
        var fds = new PollFd[] { new() { Fd = c.EvU, Events = Posix.POLLIN } };
        Assert.Equal(0, PU.Poll(fds, 0));
        Assert.Equal(0, fds[0].REvents & Posix.POLLIN);
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));
        Assert.Equal(1, PU.Poll(fds, 0));
        Assert.Equal(Posix.POLLIN, fds[0].REvents & Posix.POLLIN);
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        Assert.Equal(0, PU.Poll(fds, 0));
        Disconnect(c);
    }

    [Fact]
    public void EV01_PollBlocksUntilAnotherThreadNotifies()
    {
        var c = Connect();
        Exception? error = null;
        var notifier = new Thread(() =>
        {
            try { Assert.Equal(0, Notify(P0, c.Ev0, c.Port0)); }
            catch (Exception e) { error = e; }
        });
        var fds = new PollFd[] { new() { Fd = c.EvU, Events = Posix.POLLIN } };
        notifier.Start();
        int rc = PU.Poll(fds, Generous);
        Assert.True(notifier.Join(Generous));
        Assert.Null(error);
        Assert.Equal(1, rc);
        Assert.Equal(Posix.POLLIN, fds[0].REvents & Posix.POLLIN);
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        Disconnect(c);
    }

    [Fact]
    public void EV01_BlockingReadWaitsForAnotherThreadsNotify()
    {
        var c = Connect(Posix.O_RDWR);
        Exception? error = null;
        var notifier = new Thread(() =>
        {
            try { Assert.Equal(0, Notify(P0, c.Ev0, c.Port0)); }
            catch (Exception e) { error = e; }
        });
        notifier.Start();
        var buf = new byte[8];
        long n = PU.Read(c.EvU, buf);
        Assert.True(notifier.Join(Generous));
        Assert.Null(error);
        Assert.Equal(4, n);
        Assert.Equal(c.PortU, BinaryPrimitives.ReadUInt32LittleEndian(buf));
        Disconnect(c);
    }

    [Fact]
    public void EV01_NonBlockingReadOnEmpty_IsEagain()
    {
        int ev = Open(PU, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        Assert.Equal(-Errno.EAGAIN, PU.Read(ev, new byte[4]));
        int port = BindUnbound(PU, ev, Dom0.Id.Value);
        Assert.True(port > 0);
        Assert.Equal(-Errno.EAGAIN, PU.Read(ev, new byte[64]));
        Assert.Equal(0, PU.Close(ev));
        AssertNoLeaks();
    }

    [Fact]
    public void EV01_CloseUnbindsEveryPort()
    {
        var c = Connect();
        Assert.Equal(0, PU.Close(c.EvU));
        Assert.False(Xen.EventChannels.IsBound(DomU.Domain, c.PortU));
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));               // the peer's port survives; the event is dropped
        Assert.Equal(0, P0.Close(c.Ev0));
        AssertNoLeaks();
    }

    // ------------------------------------------------------------------ EV02

    [Fact]
    public void EV02_UnbindOrNotifyOfPortNotBoundToThisFile_IsEnotconn()
    {
        var c = Connect();
        int other = Open(PU, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        // bound, but on another file of the same process
        Assert.Equal(-Errno.ENOTCONN, Notify(PU, other, c.PortU));
        Assert.Equal(-Errno.ENOTCONN, Unbind(PU, other, c.PortU));
        // never bound anywhere; port 0; the max valid port
        foreach (uint p in new uint[] { 0, 1000, 4095 })
        {
            Assert.Equal(-Errno.ENOTCONN, Notify(PU, other, p));
            Assert.Equal(-Errno.ENOTCONN, Unbind(PU, other, p));
        }
        Assert.True(Xen.EventChannels.IsBound(DomU.Domain, c.PortU));      // nothing was unbound
        Assert.Equal(0, Notify(P0, c.Ev0, c.Port0));
        Assert.Null(ReadPort(PU, other));
        Assert.Equal(c.PortU, ReadPort(PU, c.EvU));
        // after UNBIND the port is no longer this file's
        Assert.Equal(0, Unbind(PU, c.EvU, c.PortU));
        Assert.Equal(-Errno.ENOTCONN, Unbind(PU, c.EvU, c.PortU));
        Assert.Equal(-Errno.ENOTCONN, Notify(PU, c.EvU, c.PortU));
        Assert.Equal(0, PU.Close(other));
        Disconnect(c);
        AssertNoLeaks();
    }

    [Fact]
    public void EV02_PortAtOrOverMax_IsEinval()
    {
        Assert.Equal(4096, XenShare.Emulation.Hypervisor.EventChannelTable.MaxPorts);
        int ev = Open(PU, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        foreach (uint p in new uint[] { 4096, 4097, 1u << 20, uint.MaxValue })
        {
            Assert.Equal(-Errno.EINVAL, Notify(PU, ev, p));
            Assert.Equal(-Errno.EINVAL, Unbind(PU, ev, p));
        }
        Assert.Equal(0, PU.Close(ev));
        AssertNoLeaks();
    }

    [Fact]
    public void EV02_UnknownIoctl_IsEnosys()
    {
        int ev = Open(PU, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        var arg = new byte[64];
        Assert.Equal(-Errno.ENOSYS, PU.Ioctl(ev, 0x00004507, arg));
        Assert.Equal(-Errno.ENOSYS, PU.Ioctl(ev, 0x00044599, arg));
        Assert.Equal(-Errno.ENOSYS, PU.Ioctl(ev, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg));
        Assert.Equal(-Errno.ENOSYS, PU.Ioctl(ev, GntDevIoctl.IOCTL_GNTDEV_SET_UNMAP_NOTIFY, arg));
        Assert.Equal(0, PU.Close(ev));
        AssertNoLeaks();
    }
}

/// <summary>IOCTL_EVTCHN_RESTRICT_DOMID as in Linux's evtchn.c (context of EV01's binds).</summary>
public sealed class EvtChnRestrictTests : EmulatorTest
{
    private static int Restrict(XenShare.Emulation.Kernel.GuestProcess p, int fd, ushort domid) =>
        p.Ioctl(fd, EvtChnIoctl.IOCTL_EVTCHN_RESTRICT_DOMID, Bytes(new ioctl_evtchn_restrict_domid { domid = domid }));

    [Fact]
    public void EV01_RestrictDomid_LimitsBinds()
    {
        int ev = Open(P0, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        Assert.Equal(-Errno.EINVAL, Restrict(P0, ev, 0));
        Assert.Equal(-Errno.EINVAL, Restrict(P0, ev, 0x7ff0));
        Assert.Equal(0, Restrict(P0, ev, DomU.Id.Value));
        Assert.Equal(-Errno.EACCES, Restrict(P0, ev, DomU.Id.Value));   // only once
        Assert.Equal(-Errno.EACCES, P0.Ioctl(ev, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Bytes(new ioctl_evtchn_bind_unbound_port { remote_domain = DomU.Id.Value })));
        Assert.Equal(-Errno.EACCES, P0.Ioctl(ev, EvtChnIoctl.IOCTL_EVTCHN_BIND_VIRQ, Bytes(new ioctl_evtchn_bind_virq { virq = 3 })));
        int evU = Open(PU, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        int portU = PU.Ioctl(evU, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Bytes(new ioctl_evtchn_bind_unbound_port { remote_domain = 0 }));
        Assert.True(portU > 0);
        Assert.Equal(-Errno.EACCES, P0.Ioctl(ev, EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, Bytes(new ioctl_evtchn_bind_interdomain { remote_domain = 5, remote_port = (uint)portU })));
        Assert.True(P0.Ioctl(ev, EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, Bytes(new ioctl_evtchn_bind_interdomain { remote_domain = DomU.Id.Value, remote_port = (uint)portU })) > 0);
        Assert.Equal(0, P0.Close(ev));
        Assert.Equal(0, PU.Close(evU));
        AssertNoLeaks();
    }
}
