namespace XenShare.Api;

/// <summary>Pixel formats the emulated display shows (DRM fourcc codes).</summary>
public static class DisplayFormats
{
    /// <summary>DRM_FORMAT_XRGB8888 ('XR24').</summary>
    public const uint XRGB8888 = 0x34325258;

    /// <summary>DRM_FORMAT_ARGB8888 ('AR24').</summary>
    public const uint ARGB8888 = 0x34325241;
}
