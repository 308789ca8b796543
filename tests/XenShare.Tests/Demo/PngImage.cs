using StbImageSharp;

namespace XenShare.Tests.Demo;

/// <summary>A decoded PNG for the tests, by a maintained decoder that is not ours (StbImageSharp, a port of
/// stb_image), so the encoder is checked by independent hands (issue 13).</summary>
internal sealed class PngImage
{
    private readonly byte[] _rgb;

    private PngImage(int width, int height, byte[] rgb)
    {
        Width = width;
        Height = height;
        _rgb = rgb;
    }

    /// <summary>Width in pixels.</summary>
    public int Width { get; }

    /// <summary>Height in pixels.</summary>
    public int Height { get; }

    /// <summary>The pixel at (x, y) as 0xRRGGBB.</summary>
    public uint GetRgb(int x, int y)
    {
        int i = ((y * Width) + x) * 3;
        return ((uint)_rgb[i] << 16) | ((uint)_rgb[i + 1] << 8) | _rgb[i + 2];
    }

    /// <summary>Decodes PNG bytes to RGB.</summary>
    public static PngImage Decode(byte[] png)
    {
        var image = ImageResult.FromMemory(png, ColorComponents.RedGreenBlue);
        return new PngImage(image.Width, image.Height, image.Data);
    }

    /// <summary>Decodes a PNG file to RGB.</summary>
    public static PngImage DecodeFile(string path) => Decode(File.ReadAllBytes(path));
}

/// <summary>The tests' PNG decoder (see <see cref="PngImage"/>).</summary>
internal static class PngDecoder
{
    /// <summary>Decodes PNG bytes.</summary>
    public static PngImage Decode(byte[] png) => PngImage.Decode(png);

    /// <summary>Decodes a PNG file.</summary>
    public static PngImage DecodeFile(string path) => PngImage.DecodeFile(path);
}
