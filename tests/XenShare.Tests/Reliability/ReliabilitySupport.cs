using System.Diagnostics;
using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using Xunit.Abstractions;

namespace XenShare.Tests.Reliability;

/// <summary>
/// Run lengths and seeds of the reliability campaigns. Short by default (CI); long with
/// <c>XENSHARE_STRESS=1</c> (duration per campaign: <c>XENSHARE_STRESS_SECONDS</c>, default 120).
/// <c>XENSHARE_SEED=n</c> replays one seed. Figures of every run are appended to the file named by
/// <c>XENSHARE_FIGURES</c> when set.
/// </summary>
internal static class Stress
{
    public static bool Long => Environment.GetEnvironmentVariable("XENSHARE_STRESS") == "1";

    public static TimeSpan Duration(double shortSeconds)
    {
        if (!Long) return TimeSpan.FromSeconds(shortSeconds);
        return TimeSpan.FromSeconds(double.TryParse(Environment.GetEnvironmentVariable("XENSHARE_STRESS_SECONDS"), out var s) ? s : 120);
    }

    /// <summary>The seed to use: XENSHARE_SEED when set, else a fresh one (always printed by the caller).</summary>
    public static int Seed()
    {
        if (int.TryParse(Environment.GetEnvironmentVariable("XENSHARE_SEED"), out int s)) return s;
        return Random.Shared.Next();
    }

    private static readonly object FiguresLock = new();

    /// <summary>Prints a figures line to the test output and appends it to XENSHARE_FIGURES.</summary>
    public static void Report(ITestOutputHelper? output, string line)
    {
        output?.WriteLine(line);
        var file = Environment.GetEnvironmentVariable("XENSHARE_FIGURES");
        if (string.IsNullOrEmpty(file)) return;
        lock (FiguresLock) File.AppendAllText(file, $"{DateTime.UtcNow:O} {line}{Environment.NewLine}");
    }
}

/// <summary>A small host for the campaigns: dom0 and guests with few pages, a low gntdev limit and few
/// fds, so limits are reached quickly and full invariant scans are cheap.</summary>
internal sealed class SmallWorld : IDisposable
{
    public const int GntDevLimit = 64;
    public const int GntAllocLimit = 96;
    public const int MaxFds = 48;

    public SmallWorld(int guests = 2, bool withPv = false, bool synchronousGntDevUnmap = false)
    {
        var kernel = new KernelOptions
        {
            GntDevLimit = GntDevLimit, GntAllocLimit = GntAllocLimit, MaxFdsPerProcess = MaxFds, SynchronousGntDevUnmap = synchronousGntDevUnmap,
        };
        var cfg = new DomainConfig { RamPages = 1024, UnpopulatedPages = 2048, MaxGrantFrames = 2, MaptrackFrames = 2 };
        Host = new EmulatedHost(12288, cfg, kernel);
        Guests.Add(Host.Dom0);
        for (int i = 0; i < guests; i++) Guests.Add(Host.CreateGuest(cfg, kernel));
        if (withPv) Guests.Add(Host.CreateGuest(cfg with { Type = DomainType.X86Pv }, kernel));
        foreach (var g in Guests) Processes.Add(g.StartProcess());
        Processes.Add(Host.Dom0.StartProcess());   // a second process in dom0
    }

    public EmulatedHost Host { get; }
    public XenHost Xen => Host.Xen;
    public List<EmulatedGuest> Guests { get; } = new();
    public List<GuestProcess> Processes { get; } = new();

    /// <summary>Exits every process and waits for syscalls in flight. First every gntdev file releases
    /// every import (IMP_RELEASE of every number), as a careful program does; closing the last gntdev fd
    /// would release them too (R5 in docs/reliability.md).</summary>
    public void ExitAll()
    {
        foreach (var p in Processes)
            for (int fd = 0; fd < MaxFds; fd++)
            {
                var f = p.GetFile(fd);
                if (f is null) continue;
                bool gntdev = f.GetType().Name == "GntDevFile";
                f.Put();
                if (!gntdev) continue;
                for (uint key = 0; key < MaxFds + 8; key++)
                    while (p.Ioctl(fd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_RELEASE, Args.Pair(key, 0)) == 0) { }
            }
        foreach (var p in Processes)
        {
            Assert.True(p.WaitIdle(TimeSpan.FromSeconds(60)), $"{p.Description}: a syscall is still in progress");
            p.Dispose();
        }
    }

    public void Dispose() => Host.Dispose();
}

internal static class Checks
{
    /// <summary>Host invariants (pins vs flags, frame ownership and refcounts); throws with the list.</summary>
    public static void Invariants(XenHost xen, string context)
    {
        var problems = HypervisorInvariants.Check(xen);
        if (problems.Count != 0)
            throw new Xunit.Sdk.XunitException($"invariants broken {context}:\n  " + string.Join("\n  ", problems.Take(30)));
    }

    public static void NoLeaks(EmulatedHost host, string context)
    {
        var leaks = host.CheckLeaks();
        if (leaks.Count != 0) throw new Xunit.Sdk.XunitException($"leaks {context}:\n  " + string.Join("\n  ", leaks.Take(30)));
        Isolated(host, context);
    }

    /// <summary>The isolation monitor found nothing: no grant-mapped frame was freed, scrubbed or handed
    /// out, no reference was taken on a free page.</summary>
    public static void Isolated(EmulatedHost host, string context)
    {
        var hazards = host.CheckIsolation();
        if (hazards.Count != 0) throw new Xunit.Sdk.XunitException($"isolation {context}:\n  " + string.Join("\n  ", hazards.Take(30)));
    }

    /// <summary>Errno values a syscall of the emulated host may legitimately return.</summary>
    public static readonly HashSet<int> SpecErrnos =
    [
        Errno.EPERM, Errno.ENOENT, Errno.EBADF, Errno.EAGAIN, Errno.ENOMEM, Errno.EFAULT, Errno.EBUSY, Errno.EINVAL,
        Errno.EMFILE, Errno.ENOTTY, Errno.ENOSPC, Errno.ENOSYS, Errno.ENOTCONN, Errno.ETIMEDOUT, Errno.EACCES,
        Errno.ESRCH, Errno.EEXIST, Errno.EFBIG, Errno.ENODEV, Errno.ESPIPE,
    ];
}

/// <summary>Raw ioctl argument builders shared by the campaigns.</summary>
internal static class Args
{
    public static byte[] AllocGref(ushort domid, uint count, bool writable)
    {
        var a = new byte[Math.Max(24, 16 + 4 * (int)count)];
        MemoryMarshal.Write(a, new ioctl_gntalloc_alloc_gref { domid = domid, flags = writable ? GntAllocIoctl.GNTALLOC_FLAG_WRITABLE : (ushort)0, count = count });
        return a;
    }

    public static uint[] AllocIds(byte[] arg, int count) => MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16, 4 * count)).ToArray();

    public static byte[] MapGrantRef(ushort domid, IReadOnlyList<uint> refs)
    {
        var a = new byte[Math.Max(24, 16 + 8 * refs.Count)];
        MemoryMarshal.Write(a, (uint)refs.Count);
        for (int i = 0; i < refs.Count; i++)
        {
            MemoryMarshal.Write(a.AsSpan(16 + 8 * i), (uint)domid);
            MemoryMarshal.Write(a.AsSpan(20 + 8 * i), refs[i]);
        }
        return a;
    }

    public static byte[] Refs(uint a0, uint a1, uint a2, uint a3, IReadOnlyList<uint> refs)
    {
        var a = new byte[Math.Max(20, 16 + 4 * refs.Count)];
        MemoryMarshal.Write(a, a0);
        MemoryMarshal.Write(a.AsSpan(4), a1);
        MemoryMarshal.Write(a.AsSpan(8), a2);
        MemoryMarshal.Write(a.AsSpan(12), a3);
        for (int i = 0; i < refs.Count; i++) MemoryMarshal.Write(a.AsSpan(16 + 4 * i), refs[i]);
        return a;
    }

    /// <summary>EXP_FROM_REFS {flags, count, fd, domid, refs}.</summary>
    public static byte[] Export(uint flags, ushort domid, IReadOnlyList<uint> refs) => Refs(flags, (uint)refs.Count, 0, domid, refs);

    /// <summary>IMP_TO_REFS {fd, count, domid, reserved, refs(out)}.</summary>
    public static byte[] Import(int fd, int count, ushort domid) => Refs((uint)fd, (uint)count, domid, 0, new uint[count]);

    public static byte[] Pair(uint a, uint b)
    {
        var x = new byte[8];
        MemoryMarshal.Write(x, a);
        MemoryMarshal.Write(x.AsSpan(4), b);
        return x;
    }

    public static byte[] U64U32U32(ulong a, uint b, uint c)
    {
        var x = new byte[16];
        MemoryMarshal.Write(x, a);
        MemoryMarshal.Write(x.AsSpan(8), b);
        MemoryMarshal.Write(x.AsSpan(12), c);
        return x;
    }

    public static byte[] HeapAlloc(ulong len, uint fdFlags = Posix.O_RDWR | Posix.O_CLOEXEC)
    {
        var x = new byte[24];
        MemoryMarshal.Write(x, len);
        MemoryMarshal.Write(x.AsSpan(12), fdFlags);
        return x;
    }
}

/// <summary>Watches worker threads: each reports the operation it is in and a progress counter; when no
/// counter moves for <see cref="Stall"/>, the run fails with every worker's current operation and the
/// managed stacks of the stuck threads.</summary>
internal sealed class Watchdog
{
    private readonly string[] _ops;
    private readonly long[] _progress;
    private readonly Thread?[] _threads;

    public Watchdog(int workers, TimeSpan stall)
    {
        _ops = new string[workers];
        _progress = new long[workers];
        _threads = new Thread?[workers];
        Stall = stall;
    }

    public TimeSpan Stall { get; }

    public void Register(int worker, Thread t) => _threads[worker] = t;

    public void Enter(int worker, string op)
    {
        Volatile.Write(ref _ops[worker], op);
        Interlocked.Increment(ref _progress[worker]);
    }

    public long Total { get { long n = 0; for (int i = 0; i < _progress.Length; i++) n += Volatile.Read(ref _progress[i]); return n; } }

    /// <summary>Waits for every worker; returns null when all finished, else a report of the stall.</summary>
    public string? Join(Func<bool> allDone, TimeSpan hardLimit)
    {
        var sw = Stopwatch.StartNew();
        long last = -1;
        var sinceProgress = Stopwatch.StartNew();
        while (!allDone())
        {
            long now = Total;
            if (now != last) { last = now; sinceProgress.Restart(); }
            if (sinceProgress.Elapsed > Stall || sw.Elapsed > hardLimit) return Describe();
            foreach (var t in _threads) if (t is not null && t.Join(50)) { }
        }
        return null;
    }

    public string Describe()
    {
        var sb = new System.Text.StringBuilder("no progress; workers:\n");
        for (int i = 0; i < _ops.Length; i++)
        {
            var t = _threads[i];
            if (t is null || !t.IsAlive) continue;
            sb.AppendLine($"  worker {i} ({t.ThreadState}) in: {Volatile.Read(ref _ops[i])}");
        }
        sb.AppendLine(StackDump.OfThisProcess());
        return sb.ToString();
    }
}

/// <summary>Managed stacks of every thread of this process, through the diagnostics client (dotnet-stack
/// style) when available; falls back to the per-worker operation report above.</summary>
internal static class StackDump
{
    public static string OfThisProcess()
    {
        try
        {
            // createdump-free: ask the runtime for a thread list through /proc and report names/states.
            var sb = new System.Text.StringBuilder("threads of the test process (/proc):\n");
            foreach (var dir in Directory.GetDirectories($"/proc/{Environment.ProcessId}/task"))
            {
                string comm = File.ReadAllText(Path.Combine(dir, "comm")).Trim();
                string wchan = File.Exists(Path.Combine(dir, "wchan")) ? File.ReadAllText(Path.Combine(dir, "wchan")).Trim() : "?";
                string stat = File.ReadAllText(Path.Combine(dir, "stat"));
                sb.AppendLine($"  tid {Path.GetFileName(dir)} {comm} wchan={wchan} state={stat.Split(") ")[^1].Split(' ')[0]}");
            }
            return sb.ToString();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return "(thread list unavailable: " + e.Message + ")";
        }
    }
}
