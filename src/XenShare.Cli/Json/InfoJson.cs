namespace XenShare.Cli.Json;

/// <summary>The shape of <c>xenshare info --json</c>.</summary>
/// <param name="Backend">"native" or "emulated".</param>
/// <param name="Native">The native probe, or null on a machine that is not a Xen domain.</param>
/// <param name="Emulated">The emulated host's defaults and limits.</param>
internal sealed record InfoJson(string Backend, InfoNativeJson? Native, InfoEmulatedJson Emulated);

/// <summary>What the native probe found (<see cref="XenShare.Native.NativeXenProbe"/>).</summary>
/// <param name="GntDevExists">/dev/xen/gntdev exists.</param>
/// <param name="GntDevOpenResult">open(2) of gntdev: 0 or -errno.</param>
/// <param name="GntAllocExists">/dev/xen/gntalloc exists.</param>
/// <param name="GntAllocOpenResult">open(2) of gntalloc: 0 or -errno.</param>
/// <param name="EvtChnExists">/dev/xen/evtchn exists.</param>
/// <param name="EvtChnOpenResult">open(2) of evtchn: 0 or -errno.</param>
/// <param name="GntDevDmaBuf">Whether gntdev has the dma-buf ioctls; null when it could not be probed.</param>
/// <param name="Complete">Everything the library needs is there.</param>
/// <param name="Summary">The probe as text.</param>
internal sealed record InfoNativeJson(
    bool GntDevExists,
    int GntDevOpenResult,
    bool GntAllocExists,
    int GntAllocOpenResult,
    bool EvtChnExists,
    int EvtChnOpenResult,
    bool? GntDevDmaBuf,
    bool Complete,
    string Summary);

/// <summary>The emulated host's defaults and limits.</summary>
/// <param name="MachineFrames">Machine frames of a default host.</param>
/// <param name="MachineMemoryBytes">The same in bytes.</param>
/// <param name="MaxGrantFrames">Grant-table frames per domain.</param>
/// <param name="GrantRefs">Grant references per domain.</param>
/// <param name="ReservedRefs">Reserved grant references.</param>
/// <param name="MaptrackHandles">Maptrack handles per domain.</param>
/// <param name="RamPages">RAM pages of a default domain.</param>
/// <param name="UnpopulatedPages">Unpopulated pages for foreign mappings.</param>
/// <param name="GntdevLimit">Grants per gntdev call.</param>
/// <param name="GntallocLimit">gntalloc grefs.</param>
/// <param name="MaxFdsPerProcess">File descriptors per process.</param>
/// <param name="GntdevDmaBuf">Whether the emulated gntdev has the dma-buf ioctls.</param>
internal sealed record InfoEmulatedJson(
    int MachineFrames,
    long MachineMemoryBytes,
    int MaxGrantFrames,
    long GrantRefs,
    long ReservedRefs,
    int MaptrackHandles,
    int RamPages,
    int UnpopulatedPages,
    int GntdevLimit,
    int GntallocLimit,
    int MaxFdsPerProcess,
    bool GntdevDmaBuf);
