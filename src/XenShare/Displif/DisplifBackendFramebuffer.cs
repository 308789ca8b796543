namespace XenShare.Displif;

/// <summary>A framebuffer on a buffer (FB_ATTACH) as the backend tracks it: the sink's view and its buffer.</summary>
internal sealed class DisplifBackendFramebuffer(DisplayFramebuffer view, DisplifBackendBuffer buffer)
{
    public DisplayFramebuffer View { get; } = view;

    public DisplifBackendBuffer Buffer { get; } = buffer;

    public ulong Cookie => View.FbCookie;
}
