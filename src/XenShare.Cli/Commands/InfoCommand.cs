using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using XenShare.Abi;
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
        int GntDevLimit,
        int GntAllocLimit,
        int MaxFdsPerProcess,
        bool GntDevDmaBuf)
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

    internal static string ToText(NativeXenProbe? probe, EmulatedLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        if (probe is null)
        {
            text.Append("backend: emulated (no ").Append(NativeXen.GntDevPath).Append(')').AppendLine();
            text.AppendLine("  native backend: run xenshare in a Xen domain (dom0 or a domU) with the Xen device drivers loaded");
            text.AppendLine("  (modprobe xen-gntdev xen-gntalloc xen-evtchn); the dma-buf ioctls need a kernel with");
            text.AppendLine("  CONFIG_XEN_GNTDEV_DMABUF (Debian's is built without: tools/realxen shows how to rebuild xen-gntdev.ko)");
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

    internal static string ToJson(NativeXenProbe? probe, EmulatedLimits limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            writer.WriteStartObject();
            writer.WriteString("backend", probe is null ? "emulated" : "native");
            if (probe is null)
            {
                writer.WriteNull("native");
            }
            else
            {
                writer.WriteStartObject("native");
                writer.WriteBoolean("gntDevExists", probe.GntDevExists);
                writer.WriteNumber("gntDevOpenResult", probe.GntDevOpenResult);
                writer.WriteBoolean("gntAllocExists", probe.GntAllocExists);
                writer.WriteNumber("gntAllocOpenResult", probe.GntAllocOpenResult);
                writer.WriteBoolean("evtChnExists", probe.EvtChnExists);
                writer.WriteNumber("evtChnOpenResult", probe.EvtChnOpenResult);
                if (probe.HasGntDevDmaBuf is bool dmaBuf) writer.WriteBoolean("gntDevDmaBuf", dmaBuf);
                else writer.WriteNull("gntDevDmaBuf");
                writer.WriteBoolean("complete", probe.IsComplete);
                writer.WriteString("summary", probe.ToString());
                writer.WriteEndObject();
            }

            writer.WriteStartObject("emulated");
            writer.WriteNumber("machineFrames", limits.MachineFrames);
            writer.WriteNumber("machineMemoryBytes", limits.MachineMemoryBytes);
            writer.WriteNumber("maxGrantFrames", limits.MaxGrantFrames);
            writer.WriteNumber("grantRefs", limits.GrantRefs);
            writer.WriteNumber("reservedRefs", limits.ReservedRefs);
            writer.WriteNumber("maptrackHandles", limits.MaptrackHandles);
            writer.WriteNumber("ramPages", limits.RamPages);
            writer.WriteNumber("unpopulatedPages", limits.UnpopulatedPages);
            writer.WriteNumber("gntdevLimit", limits.GntDevLimit);
            writer.WriteNumber("gntallocLimit", limits.GntAllocLimit);
            writer.WriteNumber("maxFdsPerProcess", limits.MaxFdsPerProcess);
            writer.WriteBoolean("gntdevDmaBuf", limits.GntDevDmaBuf);
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }
}
