using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;

namespace XenShare.Tests.Emulation;

/// <summary>
/// Base of every emulator test: a fresh host with dom0 (Arm64) and domU (dom1, Arm64), and after the
/// test (TestMemoryPool style) a leak check - every fd closed, every mapping gone, every page back, every
/// grant entry invalid, no maptrack handle, no bound port -, the host invariants (pins against flags,
/// frame ownership and reference counts) and the isolation monitor (no grant-mapped frame was ever freed,
/// scrubbed or handed out). A test that leaves anything, or caused a hazard it did not take, fails.
/// </summary>
public abstract class EmulatorTest : IDisposable
{
    protected EmulatorTest() : this(null, null) { }

    protected EmulatorTest(DomainConfig? domU, KernelOptions? kernel, DomainConfig? dom0 = null)
    {
        Host = new EmulatedHost(262144, dom0, kernel);
        Dom0 = Host.Dom0;
        DomU = Host.CreateGuest(domU ?? new DomainConfig(), kernel);
        P0 = Dom0.StartProcess();
        PU = DomU.StartProcess();
    }

    protected EmulatedHost Host { get; }
    protected EmulatedGuest Dom0 { get; }
    protected EmulatedGuest DomU { get; }
    /// <summary>A process in dom0 (the backend side).</summary>
    protected GuestProcess P0 { get; }
    /// <summary>A process in domU (the frontend side).</summary>
    protected GuestProcess PU { get; }
    protected XenHost Xen => Host.Xen;

    /// <summary>Set by tests that deliberately end with state alive (then they check it themselves).</summary>
    protected bool SkipLeakCheck { get; set; }

    public void Dispose()
    {
        try
        {
            if (!SkipLeakCheck)
            {
                // A wait released at the end of a test may still be returning on its own thread.
                Assert.True(P0.WaitIdle(TimeSpan.FromSeconds(30)) && PU.WaitIdle(TimeSpan.FromSeconds(30)), "a syscall is still in progress");
                var leaks = Host.CheckLeaks();
                Assert.True(leaks.Count == 0, "leaks after test:\n  " + string.Join("\n  ", leaks));
                var broken = HypervisorInvariants.Check(Xen);
                Assert.True(broken.Count == 0, "invariants after test:\n  " + string.Join("\n  ", broken.Take(20)));
            }
            // Always, even when a test keeps state alive on purpose: a hazard is never expected unless taken.
            var hazards = Host.CheckIsolation();
            Assert.True(hazards.Count == 0, "isolation after test:\n  " + string.Join("\n  ", hazards));
        }
        finally
        {
            P0.Dispose();
            PU.Dispose();
            Host.Dispose();
        }
        GC.SuppressFinalize(this);
    }

    /// <summary>Asserts the host is clean now (mid-test, after a failure path).</summary>
    protected void AssertNoLeaks()
    {
        var leaks = Host.CheckLeaks();
        Assert.True(leaks.Count == 0, "leaks:\n  " + string.Join("\n  ", leaks));
        var hazards = Host.CheckIsolation();
        Assert.True(hazards.Count == 0, "isolation:\n  " + string.Join("\n  ", hazards));
    }

    // ------------------------------------------------------------ byte-level ioctl helpers

    /// <summary>A non-blocking evtchn pair: domU offers a port to dom0, which binds it.</summary>
    protected (int EvU, uint PortU, int Ev0, uint Port0) Channel()
    {
        int evU = Open(PU, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        int portU = PU.Ioctl(evU, EvtChnIoctl.IOCTL_EVTCHN_BIND_UNBOUND_PORT, Bytes(new ioctl_evtchn_bind_unbound_port { remote_domain = 0 }));
        Assert.True(portU > 0, portU.ToString(System.Globalization.CultureInfo.InvariantCulture));
        int ev0 = Open(P0, "/dev/xen/evtchn", Posix.O_RDWR | Posix.O_NONBLOCK);
        int port0 = P0.Ioctl(ev0, EvtChnIoctl.IOCTL_EVTCHN_BIND_INTERDOMAIN, Bytes(new ioctl_evtchn_bind_interdomain { remote_domain = DomU.Id.Value, remote_port = (uint)portU }));
        Assert.True(port0 > 0, port0.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return (evU, (uint)portU, ev0, (uint)port0);
    }

    /// <summary>read() of one port from a non-blocking evtchn fd; null on EAGAIN.</summary>
    protected static uint? ReadPort(GuestProcess p, int ev)
    {
        var buf = new byte[4];
        long n = p.Read(ev, buf);
        if (n == -Errno.EAGAIN) return null;
        Assert.Equal(4, n);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(buf);
    }

    protected static byte[] Bytes<T>(T value, int extra = 0) where T : unmanaged
    {
        var b = new byte[Unsafe.SizeOf<T>() + extra];
        MemoryMarshal.Write(b, in value);
        return b;
    }

    protected static T Read<T>(byte[] b) where T : unmanaged => MemoryMarshal.Read<T>(b);

    protected static int Open(GuestProcess p, string path, int flags = Posix.O_RDWR | Posix.O_CLOEXEC)
    {
        int fd = p.Open(path, flags);
        Assert.True(fd >= 0, $"open {path}: {fd}");
        return fd;
    }

    /// <summary>gntalloc ALLOC_GREF in <paramref name="p"/>: returns (index, refs).</summary>
    protected static (ulong Index, uint[] Refs) AllocGrefs(GuestProcess p, int fd, DomainId to, int count, bool writable = true)
    {
        var arg = AllocGrefArg(to, count, writable);
        int rc = p.Ioctl(fd, GntAllocIoctl.IOCTL_GNTALLOC_ALLOC_GREF, arg);
        Assert.Equal(0, rc);
        var refs = MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16, 4 * count)).ToArray();
        return (MemoryMarshal.Read<ulong>(arg.AsSpan(8)), refs);
    }

    protected internal static byte[] AllocGrefArg(DomainId to, int count, bool writable)
    {
        var arg = new byte[Math.Max(24, 16 + 4 * count)];
        MemoryMarshal.Write(arg, new ioctl_gntalloc_alloc_gref { domid = to.Value, flags = writable ? GntAllocIoctl.GNTALLOC_FLAG_WRITABLE : (ushort)0, count = (uint)count });
        return arg;
    }

    protected static byte[] MapGrantRefArg(DomainId from, params uint[] refs)
    {
        var arg = new byte[Math.Max(24, 16 + 8 * refs.Length)];
        MemoryMarshal.Write(arg, (uint)refs.Length);
        for (int i = 0; i < refs.Length; i++)
        {
            MemoryMarshal.Write(arg.AsSpan(16 + 8 * i), (uint)from.Value);
            MemoryMarshal.Write(arg.AsSpan(20 + 8 * i), refs[i]);
        }
        return arg;
    }

    /// <summary>gntdev MAP_GRANT_REF: returns the mmap offset.</summary>
    protected internal static ulong MapGrantRefs(GuestProcess p, int fd, DomainId from, params uint[] refs)
    {
        var arg = MapGrantRefArg(from, refs);
        Assert.Equal(0, p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_MAP_GRANT_REF, arg));
        return MemoryMarshal.Read<ulong>(arg.AsSpan(8));
    }

    protected internal static int UnmapGrantRef(GuestProcess p, int fd, ulong index, uint count) =>
        p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_UNMAP_GRANT_REF, Bytes(new ioctl_gntdev_unmap_grant_ref { index = index, count = count }));

    protected (ushort Flags, ushort DomId, uint Frame) Entry(EmulatedGuest g, uint gref) => g.Domain.GrantTable.ReadEntry(new GrantRef(gref));
}
