namespace XenShare.Displif;

/// <summary>The DRM fourcc codes Linux's xen-drm-front offers (its plane's formats) and their bits per
/// pixel; the backend accepts these at FB_ATTACH and refuses any other code with -EINVAL.</summary>
public static class DisplifPixelFormat
{
    /// <summary>DRM_FORMAT_RGB565 ("RG16").</summary>
    public const uint RG16 = 'R' | ('G' << 8) | ('1' << 16) | ((uint)'6' << 24);
    /// <summary>DRM_FORMAT_RGB888 ("RG24").</summary>
    public const uint RG24 = 'R' | ('G' << 8) | ('2' << 16) | ((uint)'4' << 24);
    /// <summary>DRM_FORMAT_XRGB8888 ("XR24").</summary>
    public const uint XR24 = 'X' | ('R' << 8) | ('2' << 16) | ((uint)'4' << 24);
    /// <summary>DRM_FORMAT_ARGB8888 ("AR24").</summary>
    public const uint AR24 = 'A' | ('R' << 8) | ('2' << 16) | ((uint)'4' << 24);
    /// <summary>DRM_FORMAT_XRGB4444 ("XR12").</summary>
    public const uint XR12 = 'X' | ('R' << 8) | ('1' << 16) | ((uint)'2' << 24);
    /// <summary>DRM_FORMAT_ARGB4444 ("AR12").</summary>
    public const uint AR12 = 'A' | ('R' << 8) | ('1' << 16) | ((uint)'2' << 24);
    /// <summary>DRM_FORMAT_XRGB1555 ("XR15").</summary>
    public const uint XR15 = 'X' | ('R' << 8) | ('1' << 16) | ((uint)'5' << 24);
    /// <summary>DRM_FORMAT_ARGB1555 ("AR15").</summary>
    public const uint AR15 = 'A' | ('R' << 8) | ('1' << 16) | ((uint)'5' << 24);
    /// <summary>DRM_FORMAT_YUYV ("YUYV").</summary>
    public const uint YUYV = 'Y' | ('U' << 8) | ('Y' << 16) | ((uint)'V' << 24);

    /// <summary>Bits per pixel of a supported fourcc, or 0 for an unknown one.</summary>
    /// <param name="fourcc">The DRM fourcc.</param>
    public static int BitsPerPixel(uint fourcc) => fourcc switch
    {
        XR24 or AR24 => 32,
        RG24 => 24,
        RG16 or XR12 or AR12 or XR15 or AR15 or YUYV => 16,
        _ => 0,
    };

    /// <summary>The four characters of a fourcc ("XR24"); unprintable bytes as '?'.</summary>
    /// <param name="fourcc">The code.</param>
    public static string Name(uint fourcc)
    {
        Span<char> c = stackalloc char[4];
        for (int i = 0; i < 4; i++)
        {
            char ch = (char)((fourcc >> (8 * i)) & 0xFF);
            c[i] = ch is >= ' ' and <= '~' ? ch : '?';
        }
        return new string(c);
    }
}
