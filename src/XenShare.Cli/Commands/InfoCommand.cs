using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using XenShare.Abi;
using XenShare.Cli.Json;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Native;

namespace XenShare.Cli.Commands;

/// <summary><c>xenshare info [--json]</c>: which backend would be used and the emulated host's defaults
/// and limits.</summary>
internal static class InfoCommand
{
    /// <summary>Creates the <c>info</c> command.</summary>
    public static Command Create()
    {
        var json = new Option<bool>("--json")
        {
            Description = "Print JSON: {\"backend\", \"native\": {...} or null, \"emulated\": {defaults and limits}}.",
        };
        var command = new Command("info", "Show the backend that would be used (native Xen if /dev/xen/gntdev exists, else emulated) and the emulated host's defaults and limits.");
        command.Options.Add(json);
        command.SetAction(parseResult =>
        {
            TextWriter output = parseResult.InvocationConfiguration.Output;
            NativeXenProbe? probe = OperatingSystem.IsLinux() && NativeXen.IsXenGuest ? NativeXen.Probe() : null;
            var limits = EmulatedLimits.Read();
            output.WriteLine(parseResult.GetValue(json) ? ToJson(probe, limits) : ToText(probe, limits));
            return 0;
        });
        return command;
    }

    /// <summary>The emulated host's defaults, read from a freshly created default host.</summary>
    internal sealed record EmulatedLimits(
        int MachineFrames,
        long MachineMemoryBytes,
        int MaxGrantFrames,
        long GrantRefs,
        long ReservedRefs,
        int MaptrackHandles,
        int RamPages,
        int UnpopulatedPages,
        [property: System.Text.Json.Serialization.JsonPropertyName("gntdevLimit")] int GntDevLimit,
        [property: System.Text.Json.Serialization.JsonPropertyName("gntallocLimit")] int GntAllocLimit,
        int MaxFdsPerProcess,
        [property: System.Text.Json.Serialization.JsonPropertyName("gntdevDmaBuf")] bool GntDevDmaBuf)
    {
        /// <summary>Creates a default host (dom0 only), reads its limits and destroys it.</summary>
        public static EmulatedLimits Read()
        {
            using var host = new EmulatedHost();
            var dom0 = host.Dom0;
            var d = dom0.Domain;
            var k = dom0.Kernel.Options;
            return new EmulatedLimits(
                host.Xen.Memory.FrameCount,
                (long)host.Xen.Memory.FrameCount * MachineMemory.PageSize,
                d.GrantTable.MaxFrames,
                (long)d.GrantTable.MaxFrames * GrantTableConstants.EntriesPerFrame,
                GrantTableConstants.NrReservedEntries,
                d.MapTrackMax,
                d.RamPages,
                d.UnpopulatedPages,
                k.GntDevLimit,
                k.GntAllocLimit,
                k.MaxFdsPerProcess,
                k.GntDevDmaBuf);
        }
    }

    /// <summary>The probe and the limits as text, lines of at most 100 characters.</summary>
    internal static string ToText(NativeXenProbe? probe, EmulatedLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        if (probe is null)
        {
            text.Append("backend: emulated (no ").Append(NativeXen.GntDevPath).Append(')').AppendLine();
            text.AppendLine("  native backend: run xenshare in a Xen domain (dom0 or a domU) with the Xen device drivers");
            text.AppendLine("  loaded (modprobe xen-gntdev xen-gntalloc xen-evtchn); the dma-buf ioctls need a kernel with");
            text.AppendLine("  CONFIG_XEN_GNTDEV_DMABUF (Debian's is built without it: tools/realxen shows how to rebuild");
            text.AppendLine("  xen-gntdev.ko)");
        }
        else
        {
            text.AppendLine("backend: native Xen");
            foreach (string line in probe.ToString().Split('\n')) text.Append("  ").AppendLine(line);
        }

        text.AppendLine("emulated host defaults:");
        text.AppendLine(c, $"  machine memory:       {limits.MachineFrames} frames ({limits.MachineMemoryBytes >> 20} MiB)");
        text.AppendLine(c, $"  max grant frames:     {limits.MaxGrantFrames} ({limits.GrantRefs} grant refs, {limits.ReservedRefs} reserved)");
        text.AppendLine(c, $"  maptrack handles:     {limits.MaptrackHandles}");
        text.AppendLine(c, $"  domain RAM:           {limits.RamPages} pages ({(long)limits.RamPages * XenPage.Size >> 20} MiB), {limits.UnpopulatedPages} unpopulated pages for mappings");
        text.AppendLine(c, $"  gntdev limit:         {limits.GntDevLimit} grants per call");
        text.AppendLine(c, $"  gntalloc limit:       {limits.GntAllocLimit} grefs");
        text.AppendLine(c, $"  fds per process:      {limits.MaxFdsPerProcess}");
        text.Append(c, $"  gntdev dma-buf:       {(limits.GntDevDmaBuf ? "yes" : "no")}");
        return text.ToString();
    }

    /// <summary>The probe and the limits as indented JSON (System.Text.Json source generation,
    /// <see cref="CliJsonContext"/>).</summary>
    internal static string ToJson(NativeXenProbe? probe, EmulatedLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var native = probe is null ? null : new InfoNativeJson(
            probe.GntDevExists, probe.GntDevOpenResult, probe.GntAllocExists, probe.GntAllocOpenResult, probe.EvtChnExists,
            probe.EvtChnOpenResult, probe.HasGntDevDmaBuf, probe.IsComplete, probe.ToString());
        return JsonSerializer.Serialize(new InfoJson(probe is null ? "emulated" : "native", native, limits), CliJsonContext.Relaxed.InfoJson);
    }
}
