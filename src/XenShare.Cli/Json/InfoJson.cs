namespace XenShare.Cli.Json;

/// <summary>The shape of <c>xenshare info --json</c>.</summary>
/// <param name="Backend">"native" or "emulated".</param>
/// <param name="Native">The native probe, or null on a machine that is not a Xen domain.</param>
/// <param name="Emulated">The emulated host's defaults and limits.</param>
internal sealed record InfoJson(string Backend, InfoNativeJson? Native, Commands.InfoCommand.EmulatedLimits Emulated);

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
