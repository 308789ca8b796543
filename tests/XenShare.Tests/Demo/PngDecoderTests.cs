using System.Buffers.Binary;
using System.IO.Compression;
using XenShare.Cli.Demo;

namespace XenShare.Tests.Demo;

public sealed class PngDecoderTests
{
    /// <summary>Reference encoder with a chosen filter per row, for exercising all five filter types.</summary>
    private static byte[] BuildPng(
        int width, int height, int channels, byte[] pixels, Func<int, byte> filterForRow, byte interlace = 0)
    {
        int bpp = channels;
        int rowBytes = width * channels;
        using var raw = new MemoryStream();
        for (int y = 0; y < height; y++)
        {
            byte filter = filterForRow(y);
            raw.WriteByte(filter);
            for (int i = 0; i < rowBytes; i++)
            {
                int x = pixels[(y * rowBytes) + i];
                int a = i >= bpp ? pixels[(y * rowBytes) + i - bpp] : 0;
                int b = y > 0 ? pixels[((y - 1) * rowBytes) + i] : 0;
                int c = i >= bpp && y > 0 ? pixels[((y - 1) * rowBytes) + i - bpp] : 0;
                int predictor = filter switch
                {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) / 2,
                    4 => PngDecoder.Paeth(a, b, c),
                    _ => throw new ArgumentOutOfRangeException(nameof(filterForRow)),
                };
                raw.WriteByte((byte)(x - predictor));
            }
        }

        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            raw.Position = 0;
            raw.CopyTo(z);
        }

        byte[] zdata = compressed.ToArray();
        using var png = new MemoryStream();
        png.Write(PngEncoder.Signature);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8;
        ihdr[9] = (byte)(channels == 4 ? 6 : 2);
        ihdr[12] = interlace;
        PngEncoder.WriteChunk(png, "IHDR"u8, ihdr);
        PngEncoder.WriteChunk(png, "tEXt"u8, "Comment\0ancillary chunks are skipped"u8);

        // Split the data over two IDAT chunks.
        int half = zdata.Length / 2;
        PngEncoder.WriteChunk(png, "IDAT"u8, zdata.AsSpan(0, half));
        PngEncoder.WriteChunk(png, "IDAT"u8, zdata.AsSpan(half));
        PngEncoder.WriteChunk(png, "IEND"u8, []);
        return png.ToArray();
    }

    private static byte[] Noise(int length, uint seed)
    {
        var data = new byte[length];
        for (int i = 0; i < data.Length; i++)
        {
            seed = (seed * 1103515245u) + 12345u;
            data[i] = (byte)(seed >> 16);
        }

        return data;
    }

    [Theory]
    [InlineData(3)]
    [InlineData(4)]
    public void Decodes_AllFiveFilterTypes(int channels)
    {
        const int Width = 19;
        const int Height = 15;
        byte[] pixels = Noise(Width * Height * channels, 5);
        byte[] png = BuildPng(Width, Height, channels, pixels, y => (byte)(y % 5));
        PngImage image = PngDecoder.Decode(png);
        Assert.Equal(Width, image.Width);
        Assert.Equal(Height, image.Height);
        Assert.Equal(channels, image.Channels);
        Assert.Equal(pixels, image.Pixels.ToArray());
    }

    [Fact]
    public void Rejects_BadSignature()
    {
        byte[] png = BuildPng(2, 2, 3, Noise(12, 1), _ => 0);
        png[1] ^= 0xFF;
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(png));
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode([]));
    }

    [Fact]
    public void Rejects_CorruptCrcAndCorruptData()
    {
        byte[] png = BuildPng(4, 4, 3, Noise(48, 2), _ => 0);

        // Byte 8 + 8 + 4: width field inside IHDR; changing it breaks the IHDR CRC.
        byte[] badHeader = (byte[])png.Clone();
        badHeader[19] ^= 1;
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(badHeader));

        // Flip a byte in the last chunk's CRC (IEND).
        byte[] badEnd = (byte[])png.Clone();
        badEnd[^1] ^= 1;
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(badEnd));
    }

    [Fact]
    public void Rejects_Truncated()
    {
        byte[] png = BuildPng(4, 4, 3, Noise(48, 3), _ => 0);
        for (int cut = 8; cut < png.Length; cut += 7)
        {
            Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(png.AsSpan(0, cut)));
        }
    }

    [Fact]
    public void Rejects_InterlacedAndUnsupportedFormats()
    {
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(BuildPng(4, 4, 3, Noise(48, 4), _ => 0, interlace: 1)));

        // Colour type 0 (greyscale) and bit depth 16 are not supported.
        byte[] png = BuildPng(4, 4, 3, Noise(48, 4), _ => 0);
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(PatchHeader(png, 9, 0)));
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(PatchHeader(png, 8, 16)));
    }

    [Fact]
    public void Rejects_InvalidFilterType()
    {
        byte[] png = BuildPng(4, 4, 3, Noise(48, 6), _ => 0);

        // Rebuild with filter byte 5 by hand: decompress, patch, recompress.
        byte[] pixels = Noise(48, 6);
        using var raw = new MemoryStream();
        for (int y = 0; y < 4; y++)
        {
            raw.WriteByte(y == 2 ? (byte)5 : (byte)0);
            raw.Write(pixels, y * 12, 12);
        }

        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Fastest, leaveOpen: true))
        {
            z.Write(raw.ToArray());
        }

        using var bad = new MemoryStream();
        bad.Write(png.AsSpan(0, 8 + 25)); // signature + IHDR chunk
        PngEncoder.WriteChunk(bad, "IDAT"u8, compressed.ToArray());
        PngEncoder.WriteChunk(bad, "IEND"u8, []);
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(bad.ToArray()));
    }

    [Fact]
    public void Rejects_UnknownCriticalChunk()
    {
        byte[] png = BuildPng(2, 2, 3, Noise(12, 8), _ => 0);
        using var patched = new MemoryStream();
        patched.Write(png.AsSpan(0, 8 + 25));
        PngEncoder.WriteChunk(patched, "ZZZZ"u8, [1, 2, 3]);
        patched.Write(png.AsSpan(8 + 25));
        Assert.Throws<InvalidDataException>(() => PngDecoder.Decode(patched.ToArray()));
    }

    /// <summary>Changes one IHDR byte (offset within the chunk data) and fixes up the CRC.</summary>
    private static byte[] PatchHeader(byte[] png, int offset, byte value)
    {
        byte[] copy = (byte[])png.Clone();
        copy[16 + offset] = value;
        uint crc = PngCrc32.Compute(copy.AsSpan(12, 17));
        BinaryPrimitives.WriteUInt32BigEndian(copy.AsSpan(29), crc);
        return copy;
    }
}
