namespace XenShare.Displif;

/// <summary>A frame a sink shows (<see cref="GntDevImportSink.FrameShown"/>): the connector, the
/// framebuffer and its pixels, valid during the callback only.</summary>
public readonly ref struct DisplayFrame
{
    /// <summary>Creates a frame.</summary>
    /// <param name="connector">The connector's index.</param>
    /// <param name="framebuffer">The framebuffer shown.</param>
    /// <param name="pixels">The picture (<see cref="DisplayFramebuffer.Pitch"/> times the height).</param>
    /// <param name="path">How the pixels were read.</param>
    public DisplayFrame(int connector, DisplayFramebuffer framebuffer, ReadOnlySpan<byte> pixels, FramePath path)
    {
        Connector = connector;
        Framebuffer = framebuffer;
        Pixels = pixels;
        Path = path;
    }

    /// <summary>The connector's index.</summary>
    public int Connector { get; }

    /// <summary>The framebuffer shown.</summary>
    public DisplayFramebuffer Framebuffer { get; }

    /// <summary>The picture, rows of <see cref="DisplayFramebuffer.Pitch"/> bytes, read through the
    /// mapping named by <see cref="Path"/>; copy it to keep it.</summary>
    public ReadOnlySpan<byte> Pixels { get; }

    /// <summary>How the pixels were read.</summary>
    public FramePath Path { get; }
}
