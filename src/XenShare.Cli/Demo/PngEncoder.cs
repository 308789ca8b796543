using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.Numerics;
using System.Runtime.Intrinsics;

namespace XenShare.Cli.Demo;

/// <summary>The per-row PNG filter applied by <see cref="PngEncoder"/> before compression.</summary>
internal enum PngFilter
{
    /// <summary>Filter type 0: raw bytes.</summary>
    None = 0,

    /// <summary>Filter type 1: difference to the pixel on the left.</summary>
    Sub = 1,

    /// <summary>Filter type 2: difference to the pixel above (best for the demo's vertical bars).</summary>
    Up = 2,
}

/// <summary>
/// Copies row <paramref name="y"/> of an XRGB8888 image into <paramref name="destination"/>, which is exactly
/// <c>width * 4</c> bytes long (little-endian words 0xXXRRGGBB, i.e. bytes B, G, R, X). Lets a caller gather a row
/// from several memory segments without assembling the whole frame.
/// </summary>
/// <param name="y">Row index, 0 = top; rows are requested in increasing order.</param>
/// <param name="destination">Buffer to fill with the row's pixels.</param>
internal delegate void XrgbRowReader(int y, Span<byte> destination);

/// <summary>
/// Writes XRGB8888 framebuffers as 8-bit truecolour (colour type 2) PNG files. Rows are streamed through
/// <see cref="ZLibStream"/> into 64 KiB IDAT chunks; no per-row allocations.
/// </summary>
/// <remarks>
/// Our own rather than a package's, for a measured reason (README, "PNG writing"): on the demo's frames the
/// maintained candidate, SkiaSharp, took 10-12 times as long at its fastest settings (18-27 times at equal file
/// size), cut the demo's frame rate from 35 to 21 flips/s, and grew the packed tool from 1.3 MB to 159 MB with its
/// native libraries. Only filtering and chunking are ours: deflate is .NET's, the chunk CRC is System.IO.Hashing's,
/// and the tests check every pixel with an independent decoder (StbImageSharp).
/// </remarks>
internal static class PngEncoder
{
    /// <summary>Largest accepted width or height in pixels.</summary>
    public const int MaxDimension = 65535;

    /// <summary>The 8-byte PNG file signature.</summary>
    public static ReadOnlySpan<byte> Signature => [137, 80, 78, 71, 13, 10, 26, 10];

    /// <summary>Encodes a contiguous XRGB8888 frame to <paramref name="destination"/>.</summary>
    /// <param name="destination">Stream receiving the PNG; left open.</param>
    /// <param name="pixels">Frame bytes; row <c>y</c> starts at <c>y * stride</c>.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="stride">Bytes between the starts of consecutive rows (at least <c>width * 4</c>).</param>
    /// <param name="compressionLevel">zlib effort; <see cref="CompressionLevel.Fastest"/> by default.</param>
    /// <param name="filter">Row filter; <see cref="PngFilter.Up"/> by default.</param>
    public static void Write(
        Stream destination,
        ReadOnlySpan<byte> pixels,
        int width,
        int height,
        int stride,
        CompressionLevel compressionLevel = CompressionLevel.Fastest,
        PngFilter filter = PngFilter.Up)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ValidateFrame(pixels.Length, width, height, stride);
        using var writer = new PngRowWriter(destination, width, height, compressionLevel, filter);
        int rowBytes = width * 4;
        for (int y = 0; y < height; y++)
        {
            writer.WriteRow(pixels.Slice(y * stride, rowBytes));
        }

        writer.Complete();
    }

    /// <summary>Encodes a contiguous XRGB8888 frame to a new (or truncated) file.</summary>
    /// <param name="path">Output file path.</param>
    /// <param name="pixels">Frame bytes; row <c>y</c> starts at <c>y * stride</c>.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="stride">Bytes between the starts of consecutive rows (at least <c>width * 4</c>).</param>
    /// <param name="compressionLevel">zlib effort; <see cref="CompressionLevel.Fastest"/> by default.</param>
    /// <param name="filter">Row filter; <see cref="PngFilter.Up"/> by default.</param>
    public static void Write(
        string path,
        ReadOnlySpan<byte> pixels,
        int width,
        int height,
        int stride,
        CompressionLevel compressionLevel = CompressionLevel.Fastest,
        PngFilter filter = PngFilter.Up)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ValidateFrame(pixels.Length, width, height, stride);
        using var file = CreateFile(path);
        Write(file, pixels, width, height, stride, compressionLevel, filter);
    }

    /// <summary>Encodes an XRGB8888 frame whose rows are supplied one at a time by <paramref name="rowReader"/>.</summary>
    /// <param name="destination">Stream receiving the PNG; left open.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="rowReader">Called once per row, top to bottom, with a pooled <c>width * 4</c> byte buffer to fill.</param>
    /// <param name="compressionLevel">zlib effort; <see cref="CompressionLevel.Fastest"/> by default.</param>
    /// <param name="filter">Row filter; <see cref="PngFilter.Up"/> by default.</param>
    public static void Write(
        Stream destination,
        int width,
        int height,
        XrgbRowReader rowReader,
        CompressionLevel compressionLevel = CompressionLevel.Fastest,
        PngFilter filter = PngFilter.Up)
    {
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(rowReader);
        ValidateDimensions(width, height);
        using var writer = new PngRowWriter(destination, width, height, compressionLevel, filter);
        int rowBytes = width * 4;
        byte[] rented = ArrayPool<byte>.Shared.Rent(rowBytes);
        try
        {
            Span<byte> row = rented.AsSpan(0, rowBytes);
            for (int y = 0; y < height; y++)
            {
                rowReader(y, row);
                writer.WriteRow(row);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }

        writer.Complete();
    }

    /// <summary>Encodes an XRGB8888 frame supplied row by row to a new (or truncated) file.</summary>
    /// <param name="path">Output file path.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="rowReader">Called once per row, top to bottom, with a pooled <c>width * 4</c> byte buffer to fill.</param>
    /// <param name="compressionLevel">zlib effort; <see cref="CompressionLevel.Fastest"/> by default.</param>
    /// <param name="filter">Row filter; <see cref="PngFilter.Up"/> by default.</param>
    public static void Write(
        string path,
        int width,
        int height,
        XrgbRowReader rowReader,
        CompressionLevel compressionLevel = CompressionLevel.Fastest,
        PngFilter filter = PngFilter.Up)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        ArgumentNullException.ThrowIfNull(rowReader);
        ValidateDimensions(width, height);
        using var file = CreateFile(path);
        Write(file, width, height, rowReader, compressionLevel, filter);
    }

    /// <summary>Validates width and height against the encoder's limits.</summary>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    internal static void ValidateDimensions(int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(width, MaxDimension);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(height, MaxDimension);
    }

    /// <summary>Validates a strided XRGB8888 frame description against the buffer length.</summary>
    /// <param name="length">Length of the pixel buffer in bytes.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="stride">Bytes between row starts.</param>
    internal static void ValidateFrame(int length, int width, int height, int stride)
    {
        ValidateDimensions(width, height);
        ArgumentOutOfRangeException.ThrowIfLessThan(stride, width * 4);
        long needed = ((long)stride * (height - 1)) + (width * 4L);
        if (length < needed)
        {
            throw new ArgumentException(
                $"Pixel buffer holds {length} bytes but a {width}x{height} frame with stride {stride} needs {needed}.",
                nameof(length));
        }
    }

    /// <summary>Writes one PNG chunk (length, type, data, CRC-32 over type and data).</summary>
    /// <param name="destination">Output stream.</param>
    /// <param name="type">Four ASCII bytes, e.g. <c>"IDAT"u8</c>.</param>
    /// <param name="data">Chunk payload.</param>
    internal static void WriteChunk(Stream destination, ReadOnlySpan<byte> type, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)data.Length);
        type.CopyTo(header[4..]);
        var hash = new System.IO.Hashing.Crc32();
        hash.Append(type);
        hash.Append(data);
        uint crc = hash.GetCurrentHashAsUInt32();
        Span<byte> trailer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(trailer, crc);
        destination.Write(header);
        destination.Write(data);
        destination.Write(trailer);
    }

    private static FileStream CreateFile(string path) =>
        new(path, FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 1 << 16);
}

/// <summary>
/// Incremental PNG writer: writes the signature and IHDR on construction, accepts XRGB8888 rows top to bottom via
/// <see cref="WriteRow"/>, and writes the final IDAT and IEND on <see cref="Complete"/>. Useful when rows live in
/// separate memory segments. Buffers are pooled; <see cref="WriteRow"/> does not allocate.
/// </summary>
internal sealed class PngRowWriter : IDisposable
{
    private readonly Stream _destination;
    private readonly IdatChunkStream _idat;
    private readonly ZLibStream _zlib;
    private readonly PngFilter _filter;
    private readonly int _rgbBytes;
    private byte[] _current;
    private byte[] _previous;
    private byte[] _filtered;
    private bool _completed;
    private bool _disposed;

    /// <summary>Starts a PNG (signature and IHDR) on <paramref name="destination"/>, which is left open.</summary>
    /// <param name="destination">Output stream.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="compressionLevel">zlib effort.</param>
    /// <param name="filter">Row filter.</param>
    public PngRowWriter(
        Stream destination,
        int width,
        int height,
        CompressionLevel compressionLevel = CompressionLevel.Fastest,
        PngFilter filter = PngFilter.Up)
    {
        ArgumentNullException.ThrowIfNull(destination);
        PngEncoder.ValidateDimensions(width, height);
        if (filter is not (PngFilter.None or PngFilter.Sub or PngFilter.Up))
        {
            throw new ArgumentOutOfRangeException(nameof(filter), filter, "Unsupported filter.");
        }

        _destination = destination;
        _filter = filter;
        Width = width;
        Height = height;
        _rgbBytes = width * 3;

        destination.Write(PngEncoder.Signature);
        Span<byte> ihdr = stackalloc byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr[4..], height);
        ihdr[8] = 8; // bit depth
        ihdr[9] = 2; // colour type: truecolour
        ihdr[10] = 0; // compression: deflate
        ihdr[11] = 0; // filter method 0
        ihdr[12] = 0; // no interlace
        PngEncoder.WriteChunk(destination, "IHDR"u8, ihdr);

        // Layout of _current/_previous: [0] = filter byte slot, [1..] = RGB row.
        _current = ArrayPool<byte>.Shared.Rent(_rgbBytes + 1);
        _previous = ArrayPool<byte>.Shared.Rent(_rgbBytes + 1);
        _filtered = ArrayPool<byte>.Shared.Rent(_rgbBytes + 1);
        _previous.AsSpan(0, _rgbBytes + 1).Clear(); // the row above the first row is all zeros
        _idat = new IdatChunkStream(destination);
        _zlib = new ZLibStream(_idat, compressionLevel, leaveOpen: true);
    }

    /// <summary>Gets the image width in pixels.</summary>
    public int Width { get; }

    /// <summary>Gets the image height in pixels.</summary>
    public int Height { get; }

    /// <summary>Gets the number of rows written so far.</summary>
    public int RowsWritten { get; private set; }

    /// <summary>Appends the next row (top to bottom).</summary>
    /// <param name="xrgbRow">At least <c>Width * 4</c> bytes of XRGB8888 pixels; extra bytes are ignored.</param>
    public void WriteRow(ReadOnlySpan<byte> xrgbRow)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed || RowsWritten >= Height)
        {
            throw new InvalidOperationException("All rows have already been written.");
        }

        if (xrgbRow.Length < Width * 4)
        {
            throw new ArgumentException($"Row must hold at least {Width * 4} bytes.", nameof(xrgbRow));
        }

        Span<byte> current = _current.AsSpan(0, _rgbBytes + 1);
        ConvertXrgbToRgb(xrgbRow[..(Width * 4)], current[1..]);
        switch (_filter)
        {
            case PngFilter.None:
                current[0] = 0;
                _zlib.Write(current);
                break;
            case PngFilter.Sub:
            {
                Span<byte> filtered = _filtered.AsSpan(0, _rgbBytes + 1);
                filtered[0] = 1;
                current.Slice(1, 3).CopyTo(filtered[1..]);
                Subtract(current[4..], current[1..^3], filtered[4..]);
                _zlib.Write(filtered);
                break;
            }

            default:
            {
                Span<byte> filtered = _filtered.AsSpan(0, _rgbBytes + 1);
                filtered[0] = 2;
                Subtract(current[1..], _previous.AsSpan(1, _rgbBytes), filtered[1..]);
                _zlib.Write(filtered);
                (_current, _previous) = (_previous, _current);
                break;
            }
        }

        RowsWritten++;
    }

    /// <summary>Finishes the zlib stream and writes the last IDAT chunk and IEND. All rows must have been written.</summary>
    public void Complete()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_completed)
        {
            return;
        }

        if (RowsWritten != Height)
        {
            throw new InvalidOperationException($"Only {RowsWritten} of {Height} rows were written.");
        }

        _zlib.Dispose(); // flushes the final deflate block and the Adler-32 trailer into _idat
        _idat.FlushChunk();
        PngEncoder.WriteChunk(_destination, "IEND"u8, []);
        _completed = true;
    }

    /// <summary>Releases pooled buffers. Does not complete the image and does not close the destination.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _zlib.Dispose();
        _idat.Dispose();
        ArrayPool<byte>.Shared.Return(_current);
        ArrayPool<byte>.Shared.Return(_previous);
        ArrayPool<byte>.Shared.Return(_filtered);
        _current = _previous = _filtered = [];
    }

    /// <summary>Converts XRGB8888 (bytes B, G, R, X) to packed RGB.</summary>
    /// <param name="source">XRGB row, 4 bytes per pixel.</param>
    /// <param name="destination">RGB row, 3 bytes per pixel; its length defines the pixel count.</param>
    internal static void ConvertXrgbToRgb(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        int pixels = destination.Length / 3;
        int s = 0;
        int d = 0;
        int p = 0;
        if (Vector128.IsHardwareAccelerated)
        {
            Vector128<byte> mask = Vector128.Create((byte)2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, 0x80, 0x80, 0x80, 0x80);

            // Each step reads 4 pixels and stores 16 bytes, of which the last 4 are overwritten by the next step.
            while (d + 16 <= destination.Length && s + 16 <= source.Length)
            {
                Vector128<byte> v = Vector128.Create(source.Slice(s, 16));
                Vector128.Shuffle(v, mask).CopyTo(destination.Slice(d, 16));
                s += 16;
                d += 12;
                p += 4;
            }
        }

        for (; p < pixels; p++, s += 4, d += 3)
        {
            destination[d] = source[s + 2];
            destination[d + 1] = source[s + 1];
            destination[d + 2] = source[s];
        }
    }

    private static void Subtract(ReadOnlySpan<byte> left, ReadOnlySpan<byte> right, Span<byte> destination)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated)
        {
            int step = Vector<byte>.Count;
            for (; i <= left.Length - step; i += step)
            {
                (new Vector<byte>(left[i..]) - new Vector<byte>(right[i..])).CopyTo(destination[i..]);
            }
        }

        for (; i < left.Length; i++)
        {
            destination[i] = (byte)(left[i] - right[i]);
        }
    }
}

/// <summary>Write-only stream that packages everything written to it into IDAT chunks of up to 64 KiB.</summary>
internal sealed class IdatChunkStream : Stream
{
    private const int ChunkCapacity = 1 << 16;
    private readonly Stream _inner;
    private byte[] _buffer;
    private int _count;

    /// <summary>Creates a chunking stream over <paramref name="inner"/> (which is not disposed with this one).</summary>
    /// <param name="inner">Stream receiving the IDAT chunks.</param>
    public IdatChunkStream(Stream inner)
    {
        _inner = inner;
        _buffer = ArrayPool<byte>.Shared.Rent(ChunkCapacity);
    }

    /// <inheritdoc/>
    public override bool CanRead => false;

    /// <inheritdoc/>
    public override bool CanSeek => false;

    /// <inheritdoc/>
    public override bool CanWrite => true;

    /// <inheritdoc/>
    public override long Length => throw new NotSupportedException();

    /// <inheritdoc/>
    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>Writes any buffered bytes as one IDAT chunk.</summary>
    public void FlushChunk()
    {
        if (_count > 0)
        {
            PngEncoder.WriteChunk(_inner, "IDAT"u8, _buffer.AsSpan(0, _count));
            _count = 0;
        }
    }

    /// <inheritdoc/>
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_buffer.Length == 0, this);
        while (!buffer.IsEmpty)
        {
            int n = Math.Min(buffer.Length, ChunkCapacity - _count);
            buffer[..n].CopyTo(_buffer.AsSpan(_count));
            _count += n;
            buffer = buffer[n..];
            if (_count == ChunkCapacity)
            {
                FlushChunk();
            }
        }
    }

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        Write(buffer.AsSpan(offset, count));
    }

    /// <inheritdoc/>
    public override void WriteByte(byte value) => Write([value]);

    /// <summary>Does nothing: chunk boundaries are decided by size and by <see cref="FlushChunk"/>.</summary>
    public override void Flush()
    {
    }

    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException();

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        if (disposing && _buffer.Length != 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = [];
        }

        base.Dispose(disposing);
    }
}
