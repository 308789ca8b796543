namespace XenShare.Displif;

/// <summary>How <see cref="GntDevImportSink"/> reads a framebuffer's pixels.</summary>
public enum FramePath
{
    /// <summary>Through the sink's own import of the dma-buf: IMP_TO_REFS naming the sink's domain, then a
    /// gntdev mapping of the refs the import returned (the buffer seen as a device sees it).</summary>
    SelfImport,

    /// <summary>Through a gntdev mapping of the refs the buffer's pages come from (the frontend's refs, or
    /// the backend's own gntalloc refs for a backend-allocated buffer): the fallback when the self-import
    /// mapping fails on a backend.</summary>
    SourceRefs,
}
