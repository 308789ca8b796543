namespace XenShare.Displif;

/// <summary>A framebuffer of a <see cref="DisplifFrontend"/> on one of its buffers (FB_ATTACH).</summary>
public sealed class DisplifFramebuffer
{
    internal DisplifFramebuffer(ulong cookie, DisplifBuffer buffer, int width, int height, uint fourCC)
    {
        Cookie = cookie;
        Buffer = buffer;
        Width = width;
        Height = height;
        FourCC = fourCC;
    }

    /// <summary>The framebuffer's cookie (fb_cookie).</summary>
    public ulong Cookie { get; }

    /// <summary>The buffer it lies on.</summary>
    public DisplifBuffer Buffer { get; }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The DRM pixel format.</summary>
    public uint FourCC { get; }
}
