using System.Buffers.Binary;
using System.IO.Compression;

namespace XenShare.Cli.Demo;

/// <summary>A decoded 8-bit RGB or RGBA image (rows packed top to bottom, no padding).</summary>
internal sealed class PngImage
{
    /// <summary>Creates an image over <paramref name="pixels"/> (not copied).</summary>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="channels">3 for RGB, 4 for RGBA.</param>
    /// <param name="pixels">Pixel bytes, <c>width * height * channels</c> long.</param>
    public PngImage(int width, int height, int channels, byte[] pixels)
    {
        ArgumentNullException.ThrowIfNull(pixels);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        if (channels is not (3 or 4))
        {
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "Must be 3 (RGB) or 4 (RGBA).");
        }

        if (pixels.Length != (long)width * height * channels)
        {
            throw new ArgumentException("Pixel array length does not match the dimensions.", nameof(pixels));
        }

        Width = width;
        Height = height;
        Channels = channels;
        Pixels = pixels;
    }

    /// <summary>Gets the width in pixels.</summary>
    public int Width { get; }

    /// <summary>Gets the height in pixels.</summary>
    public int Height { get; }

    /// <summary>Gets the bytes per pixel: 3 (RGB, colour type 2) or 4 (RGBA, colour type 6).</summary>
    public int Channels { get; }

    /// <summary>Gets the pixel bytes: R, G, B[, A] per pixel, <c>Width * Channels</c> bytes per row.</summary>
    public ReadOnlyMemory<byte> Pixels { get; }

    /// <summary>Returns the pixel at (<paramref name="x"/>, <paramref name="y"/>) as 0x00RRGGBB (alpha ignored).</summary>
    /// <param name="x">Column.</param>
    /// <param name="y">Row.</param>
    /// <returns>The colour, comparable with XRGB8888 words with the X byte cleared.</returns>
    public uint GetRgb(int x, int y)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(x);
        ArgumentOutOfRangeException.ThrowIfNegative(y);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(x, Width);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(y, Height);
        ReadOnlySpan<byte> p = Pixels.Span.Slice(((y * Width) + x) * Channels, 3);
        return ((uint)p[0] << 16) | ((uint)p[1] << 8) | p[2];
    }
}

/// <summary>
/// Minimal PNG decoder for tests and self-checks: 8-bit truecolour (type 2) or truecolour with alpha (type 6),
/// non-interlaced, all five filter types. CRCs are verified; anything else throws <see cref="InvalidDataException"/>.
/// </summary>
internal static class PngDecoder
{
    /// <summary>Largest decoded size (filtered bytes) accepted, to keep corrupt headers from exhausting memory.</summary>
    public const long MaxDecodedBytes = 1L << 30;

    /// <summary>Decodes a PNG held in memory.</summary>
    /// <param name="data">The whole PNG file.</param>
    /// <returns>The decoded image.</returns>
    /// <exception cref="InvalidDataException">The data is not a supported, well-formed PNG.</exception>
    public static PngImage Decode(ReadOnlySpan<byte> data)
    {
        if (data.Length < 8 || !data[..8].SequenceEqual(PngEncoder.Signature))
        {
            throw new InvalidDataException("Missing PNG signature.");
        }

        int pos = 8;
        int width = 0;
        int height = 0;
        int channels = 0;
        bool sawHeader = false;
        bool sawEnd = false;
        bool idatClosed = false;
        using var idat = new MemoryStream();
        while (pos < data.Length)
        {
            if (data.Length - pos < 12)
            {
                throw new InvalidDataException("Truncated chunk header.");
            }

            uint length = BinaryPrimitives.ReadUInt32BigEndian(data[pos..]);
            if (length > int.MaxValue || length > (uint)(data.Length - pos - 12))
            {
                throw new InvalidDataException("Chunk length exceeds the data.");
            }

            ReadOnlySpan<byte> type = data.Slice(pos + 4, 4);
            ReadOnlySpan<byte> body = data.Slice(pos + 8, (int)length);
            uint storedCrc = BinaryPrimitives.ReadUInt32BigEndian(data[(pos + 8 + (int)length)..]);
            pos += 12 + (int)length;
            foreach (byte b in type)
            {
                if (!char.IsAsciiLetter((char)b))
                {
                    throw new InvalidDataException("Invalid chunk type.");
                }
            }

            if (PngCrc32.Append(PngCrc32.Compute(type), body) != storedCrc)
            {
                throw new InvalidDataException($"CRC mismatch in {System.Text.Encoding.ASCII.GetString(type)} chunk.");
            }

            if (!sawHeader)
            {
                if (!type.SequenceEqual("IHDR"u8))
                {
                    throw new InvalidDataException("First chunk is not IHDR.");
                }

                (width, height, channels) = ParseHeader(body);
                sawHeader = true;
                continue;
            }

            if (type.SequenceEqual("IDAT"u8))
            {
                if (idatClosed)
                {
                    throw new InvalidDataException("IDAT chunks are not consecutive.");
                }

                idat.Write(body);
                continue;
            }

            if (idat.Length > 0)
            {
                idatClosed = true;
            }

            if (type.SequenceEqual("IEND"u8))
            {
                sawEnd = true;
                break;
            }

            if (type.SequenceEqual("IHDR"u8))
            {
                throw new InvalidDataException("Duplicate IHDR.");
            }

            if (type.SequenceEqual("PLTE"u8) && channels == 3 && idat.Length == 0)
            {
                continue; // optional suggested palette for truecolour; irrelevant here
            }

            if ((type[0] & 0x20) == 0)
            {
                throw new InvalidDataException(
                    $"Unsupported critical chunk {System.Text.Encoding.ASCII.GetString(type)}.");
            }

            // Ancillary chunk: ignore.
        }

        if (!sawHeader || !sawEnd)
        {
            throw new InvalidDataException("Missing IHDR or IEND.");
        }

        if (idat.Length == 0)
        {
            throw new InvalidDataException("No image data.");
        }

        idat.Position = 0;
        return Inflate(idat, width, height, channels);
    }

    /// <summary>Decodes a PNG read from <paramref name="source"/> (to its end).</summary>
    /// <param name="source">Stream positioned at the PNG signature.</param>
    /// <returns>The decoded image.</returns>
    /// <exception cref="InvalidDataException">The data is not a supported, well-formed PNG.</exception>
    public static PngImage Decode(Stream source)
    {
        ArgumentNullException.ThrowIfNull(source);
        using var buffer = new MemoryStream();
        source.CopyTo(buffer);
        return Decode(buffer.GetBuffer().AsSpan(0, (int)buffer.Length));
    }

    /// <summary>Decodes the PNG file at <paramref name="path"/>.</summary>
    /// <param name="path">File path.</param>
    /// <returns>The decoded image.</returns>
    /// <exception cref="InvalidDataException">The file is not a supported, well-formed PNG.</exception>
    public static PngImage DecodeFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return Decode(File.ReadAllBytes(path));
    }

    private static (int Width, int Height, int Channels) ParseHeader(ReadOnlySpan<byte> body)
    {
        if (body.Length != 13)
        {
            throw new InvalidDataException("IHDR must be 13 bytes.");
        }

        uint width = BinaryPrimitives.ReadUInt32BigEndian(body);
        uint height = BinaryPrimitives.ReadUInt32BigEndian(body[4..]);
        if (width == 0 || height == 0 || width > int.MaxValue || height > int.MaxValue)
        {
            throw new InvalidDataException("Invalid image dimensions.");
        }

        if (body[8] != 8)
        {
            throw new InvalidDataException($"Unsupported bit depth {body[8]}.");
        }

        int channels = body[9] switch
        {
            2 => 3,
            6 => 4,
            _ => throw new InvalidDataException($"Unsupported colour type {body[9]}."),
        };

        if (body[10] != 0 || body[11] != 0)
        {
            throw new InvalidDataException("Unsupported compression or filter method.");
        }

        if (body[12] != 0)
        {
            throw new InvalidDataException("Interlaced images are not supported.");
        }

        if (((((long)width * channels) + 1) * height) > MaxDecodedBytes)
        {
            throw new InvalidDataException("Image too large.");
        }

        return ((int)width, (int)height, channels);
    }

    private static PngImage Inflate(Stream compressed, int width, int height, int channels)
    {
        int rowBytes = width * channels;
        int filteredLength = (rowBytes + 1) * height;
        byte[] filtered = new byte[filteredLength];
        using (var zlib = new ZLibStream(compressed, CompressionMode.Decompress, leaveOpen: true))
        {
            if (zlib.ReadAtLeast(filtered, filteredLength, throwOnEndOfStream: false) != filteredLength)
            {
                throw new InvalidDataException("Image data is shorter than the header implies.");
            }

            if (zlib.ReadByte() != -1)
            {
                throw new InvalidDataException("Image data is longer than the header implies.");
            }
        }

        byte[] pixels = new byte[(long)rowBytes * height];
        int bpp = channels;
        for (int y = 0; y < height; y++)
        {
            ReadOnlySpan<byte> line = filtered.AsSpan((y * (rowBytes + 1)) + 1, rowBytes);
            Span<byte> output = pixels.AsSpan(y * rowBytes, rowBytes);
            ReadOnlySpan<byte> prior = y == 0 ? default : pixels.AsSpan((y - 1) * rowBytes, rowBytes);
            byte filter = filtered[y * (rowBytes + 1)];
            switch (filter)
            {
                case 0:
                    line.CopyTo(output);
                    break;
                case 1:
                    for (int i = 0; i < rowBytes; i++)
                    {
                        output[i] = (byte)(line[i] + (i >= bpp ? output[i - bpp] : 0));
                    }

                    break;
                case 2:
                    for (int i = 0; i < rowBytes; i++)
                    {
                        output[i] = (byte)(line[i] + (y > 0 ? prior[i] : 0));
                    }

                    break;
                case 3:
                    for (int i = 0; i < rowBytes; i++)
                    {
                        int a = i >= bpp ? output[i - bpp] : 0;
                        int b = y > 0 ? prior[i] : 0;
                        output[i] = (byte)(line[i] + ((a + b) >> 1));
                    }

                    break;
                case 4:
                    for (int i = 0; i < rowBytes; i++)
                    {
                        int a = i >= bpp ? output[i - bpp] : 0;
                        int b = y > 0 ? prior[i] : 0;
                        int c = i >= bpp && y > 0 ? prior[i - bpp] : 0;
                        output[i] = (byte)(line[i] + Paeth(a, b, c));
                    }

                    break;
                default:
                    throw new InvalidDataException($"Invalid filter type {filter} in row {y}.");
            }
        }

        return new PngImage(width, height, channels, pixels);
    }

    /// <summary>The PNG Paeth predictor.</summary>
    /// <param name="a">Left.</param>
    /// <param name="b">Above.</param>
    /// <param name="c">Upper left.</param>
    /// <returns>The predictor value.</returns>
    internal static int Paeth(int a, int b, int c)
    {
        int p = a + b - c;
        int pa = Math.Abs(p - a);
        int pb = Math.Abs(p - b);
        int pc = Math.Abs(p - c);
        if (pa <= pb && pa <= pc)
        {
            return a;
        }

        return pb <= pc ? b : c;
    }
}
