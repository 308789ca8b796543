using System.Buffers;
using System.Globalization;
using System.IO.Compression;
using System.Runtime.InteropServices;

namespace XenShare.Cli.Demo;

/// <summary>
/// Builds one XRGB8888 image that tiles sampled frames as nearest-neighbour thumbnails in a grid, each with its frame
/// number underneath, and writes it with <see cref="PngEncoder"/>. Add frames with <see cref="AddFrame(ReadOnlySpan{byte}, int, int)"/>
/// (contiguous memory) or <see cref="AddFrame(XrgbRowReader, int)"/> (rows gathered by the caller; only the sampled
/// rows are requested). Tiles fill left to right, top to bottom; unused tiles stay background. A caption set with
/// <see cref="SetCaption"/> (the demo stamps the run's mode and counters) is drawn in a strip under the grid of the
/// saved image.
/// </summary>
internal sealed class ContactSheet
{
    /// <summary>Colour of borders, label strips and unused tiles.</summary>
    public const uint BackgroundColor = 0x202020;

    /// <summary>Colour of the frame-number labels.</summary>
    public const uint LabelColor = 0xFFFFFF;

    /// <summary>Pixels per font pixel of the labels.</summary>
    public const int LabelScale = 2;

    /// <summary>Vertical padding above and below a label, in pixels.</summary>
    public const int LabelPadding = 3;

    private readonly byte[] _pixels;
    private string[] _captionLines = [];
    private readonly int[] _sourceX;
    private readonly int[] _sourceY;

    /// <summary>Creates an empty sheet.</summary>
    /// <param name="frameWidth">Width of the source frames.</param>
    /// <param name="frameHeight">Height of the source frames.</param>
    /// <param name="capacity">Number of tiles (frames that will be added).</param>
    /// <param name="columns">Maximum tiles per row; fewer if <paramref name="capacity"/> is smaller.</param>
    /// <param name="thumbnailWidth">Thumbnail width; the height follows the source aspect ratio.</param>
    /// <param name="border">Gap between and around tiles, in pixels.</param>
    public ContactSheet(
        int frameWidth, int frameHeight, int capacity, int columns = 4, int thumbnailWidth = 320, int border = 8)
    {
        PngEncoder.ValidateDimensions(frameWidth, frameHeight);
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(thumbnailWidth, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(border);

        FrameWidth = frameWidth;
        FrameHeight = frameHeight;
        Capacity = capacity;
        Columns = Math.Min(columns, capacity);
        Rows = (capacity + Columns - 1) / Columns;
        ThumbnailWidth = thumbnailWidth;
        ThumbnailHeight = Math.Max(1, (int)Math.Round((double)thumbnailWidth * frameHeight / frameWidth));
        Border = border;
        LabelHeight = (TinyFont.GlyphHeight * LabelScale) + (2 * LabelPadding);

        long width = ((long)Columns * ThumbnailWidth) + ((Columns + 1L) * border);
        long height = ((long)Rows * (ThumbnailHeight + LabelHeight)) + ((Rows + 1L) * border);
        if (width > PngEncoder.MaxDimension || height > PngEncoder.MaxDimension)
        {
            throw new ArgumentException(
                $"A {width}x{height} contact sheet exceeds the {PngEncoder.MaxDimension}-pixel limit.",
                nameof(capacity));
        }

        Width = (int)width;
        Height = (int)height;
        _pixels = GC.AllocateUninitializedArray<byte>(Width * Height * 4);
        new XrgbCanvas(_pixels, Width, Height, Stride).FillRect(0, 0, Width, Height, BackgroundColor);

        // Nearest neighbour, sampling at thumbnail pixel centres.
        _sourceX = new int[ThumbnailWidth];
        for (int tx = 0; tx < ThumbnailWidth; tx++)
        {
            _sourceX[tx] = (int)((((2L * tx) + 1) * frameWidth) / (2L * ThumbnailWidth));
        }

        _sourceY = new int[ThumbnailHeight];
        for (int ty = 0; ty < ThumbnailHeight; ty++)
        {
            _sourceY[ty] = (int)((((2L * ty) + 1) * frameHeight) / (2L * ThumbnailHeight));
        }
    }

    /// <summary>Gets the source frame width.</summary>
    public int FrameWidth { get; }

    /// <summary>Gets the source frame height.</summary>
    public int FrameHeight { get; }

    /// <summary>Gets the number of tiles.</summary>
    public int Capacity { get; }

    /// <summary>Gets the number of tile columns.</summary>
    public int Columns { get; }

    /// <summary>Gets the number of tile rows.</summary>
    public int Rows { get; }

    /// <summary>Gets the thumbnail width in pixels.</summary>
    public int ThumbnailWidth { get; }

    /// <summary>Gets the thumbnail height in pixels.</summary>
    public int ThumbnailHeight { get; }

    /// <summary>Gets the border width in pixels.</summary>
    public int Border { get; }

    /// <summary>Gets the height of the label strip under each thumbnail.</summary>
    public int LabelHeight { get; }

    /// <summary>Gets the sheet width in pixels.</summary>
    public int Width { get; }

    /// <summary>Gets the sheet height in pixels.</summary>
    public int Height { get; }

    /// <summary>Gets the sheet stride in bytes (<c>Width * 4</c>).</summary>
    public int Stride => Width * 4;

    /// <summary>Gets the number of frames added so far.</summary>
    public int Count { get; private set; }

    /// <summary>Gets the sheet's XRGB8888 pixels (the grid, without the caption strip).</summary>
    public ReadOnlySpan<byte> Pixels => _pixels;

    /// <summary>Gets the caption's lines as drawn (wrapped to the sheet's width); empty without a caption.</summary>
    public IReadOnlyList<string> CaptionLines => _captionLines;

    /// <summary>Gets the pixels per font pixel of the caption: 2 on sheets at least 600 pixels wide, else 1.</summary>
    public int CaptionScale => Width >= 600 ? 2 : 1;

    /// <summary>Gets the height of one caption line, padding included.</summary>
    public int CaptionLineHeight => (TinyFont.GlyphHeight * CaptionScale) + (2 * LabelPadding);

    /// <summary>Gets the characters that fit on one caption line.</summary>
    public int CaptionCharactersPerLine => Math.Max(1, (Width - (2 * Border) + CaptionScale) / (TinyFont.Advance * CaptionScale));

    /// <summary>Gets the height of the caption strip under the grid (0 without a caption).</summary>
    public int CaptionHeight => _captionLines.Length == 0 ? 0 : (_captionLines.Length * CaptionLineHeight) + Border;

    /// <summary>Gets the height of the saved image: the grid and the caption strip.</summary>
    public int ImageHeight => Height + CaptionHeight;

    /// <summary>Sets the caption drawn under the grid: each paragraph starts a new line; its items are separated by two
    /// spaces and wrap to further lines at item boundaries (an item longer than a line wraps at its spaces).</summary>
    /// <param name="paragraphs">The caption's paragraphs.</param>
    public void SetCaption(IEnumerable<IReadOnlyList<string>> paragraphs)
    {
        ArgumentNullException.ThrowIfNull(paragraphs);
        int max = CaptionCharactersPerLine;
        var lines = new List<string>();
        foreach (var items in paragraphs)
        {
            string current = "";
            foreach (string item in items)
            {
                string candidate = current.Length == 0 ? item : current + "  " + item;
                if (candidate.Length <= max)
                {
                    current = candidate;
                    continue;
                }

                if (current.Length > 0)
                {
                    lines.Add(current);
                }

                current = "";
                foreach (string word in item.Split(' ', StringSplitOptions.RemoveEmptyEntries))
                {
                    string rest = word;
                    while (rest.Length > 0)
                    {
                        string joined = current.Length == 0 ? rest : current + " " + rest;
                        if (joined.Length <= max)
                        {
                            current = joined;
                            rest = "";
                        }
                        else if (current.Length > 0)
                        {
                            lines.Add(current);
                            current = "";
                        }
                        else
                        {
                            lines.Add(rest[..max]);
                            rest = rest[max..];
                        }
                    }
                }
            }

            if (current.Length > 0)
            {
                lines.Add(current);
            }
        }

        _captionLines = [.. lines];
    }

    /// <summary>Returns the top-left corner of caption line <paramref name="line"/>'s first glyph in the saved image.</summary>
    /// <param name="line">Line index, 0 to <see cref="CaptionLines"/>.Count - 1.</param>
    /// <returns>Image coordinates of the text origin.</returns>
    public (int X, int Y) GetCaptionOrigin(int line)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(line);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(line, _captionLines.Length);
        return (Border, Height + (line * CaptionLineHeight) + LabelPadding);
    }

    /// <summary>The saved image's XRGB8888 pixels: the grid, then the caption strip (<see cref="ImageHeight"/> rows of
    /// <see cref="Stride"/> bytes).</summary>
    /// <returns>A new buffer; the grid itself when there is no caption.</returns>
    public byte[] RenderImage()
    {
        if (_captionLines.Length == 0)
        {
            return _pixels;
        }

        byte[] image = GC.AllocateUninitializedArray<byte>(Stride * ImageHeight);
        _pixels.CopyTo(image, 0);
        var canvas = new XrgbCanvas(image, Width, ImageHeight, Stride);
        canvas.FillRect(0, Height, Width, CaptionHeight, BackgroundColor);
        for (int line = 0; line < _captionLines.Length; line++)
        {
            (int x, int y) = GetCaptionOrigin(line);
            TinyFont.DrawText(canvas, x, y, _captionLines[line], CaptionScale, LabelColor);
        }

        return image;
    }

    /// <summary>Returns the top-left corner of tile <paramref name="index"/>'s thumbnail.</summary>
    /// <param name="index">Tile index, 0 to <see cref="Capacity"/> - 1.</param>
    /// <returns>Sheet coordinates of the thumbnail's top-left pixel.</returns>
    public (int X, int Y) GetThumbnailOrigin(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, Capacity);
        int column = index % Columns;
        int row = index / Columns;
        return (Border + (column * (ThumbnailWidth + Border)), Border + (row * (ThumbnailHeight + LabelHeight + Border)));
    }

    /// <summary>Adds the next frame from contiguous XRGB8888 memory.</summary>
    /// <param name="xrgb">Frame bytes; row <c>y</c> starts at <c>y * stride</c>.</param>
    /// <param name="stride">Bytes between row starts.</param>
    /// <param name="frameNumber">Number printed under the thumbnail.</param>
    public void AddFrame(ReadOnlySpan<byte> xrgb, int stride, int frameNumber)
    {
        PngEncoder.ValidateFrame(xrgb.Length, FrameWidth, FrameHeight, stride);
        (int x0, int y0) = BeginTile(frameNumber);
        for (int ty = 0; ty < ThumbnailHeight; ty++)
        {
            ReadOnlySpan<byte> source = xrgb.Slice(_sourceY[ty] * stride, FrameWidth * 4);
            SampleRow(source, y0 + ty, x0);
        }

        Count++;
    }

    /// <summary>Adds the next frame, reading only the source rows the thumbnail samples through <paramref name="rowReader"/>.</summary>
    /// <param name="rowReader">Fills a pooled <c>FrameWidth * 4</c> byte buffer with the requested row (increasing order).</param>
    /// <param name="frameNumber">Number printed under the thumbnail.</param>
    public void AddFrame(XrgbRowReader rowReader, int frameNumber)
    {
        ArgumentNullException.ThrowIfNull(rowReader);
        (int x0, int y0) = BeginTile(frameNumber);
        int rowBytes = FrameWidth * 4;
        byte[] rented = ArrayPool<byte>.Shared.Rent(rowBytes);
        try
        {
            Span<byte> row = rented.AsSpan(0, rowBytes);
            int loaded = -1;
            for (int ty = 0; ty < ThumbnailHeight; ty++)
            {
                if (_sourceY[ty] != loaded)
                {
                    loaded = _sourceY[ty];
                    rowReader(loaded, row);
                }

                SampleRow(row, y0 + ty, x0);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }

        Count++;
    }

    /// <summary>Writes the sheet (and its caption) as a PNG to <paramref name="destination"/> (left open).</summary>
    /// <param name="destination">Output stream.</param>
    /// <param name="compressionLevel">zlib effort.</param>
    public void Save(Stream destination, CompressionLevel compressionLevel = CompressionLevel.Fastest) =>
        PngEncoder.Write(destination, RenderImage(), Width, ImageHeight, Stride, compressionLevel);

    /// <summary>Writes the sheet (and its caption) as a PNG file.</summary>
    /// <param name="path">Output file path (created or truncated).</param>
    /// <param name="compressionLevel">zlib effort.</param>
    public void Save(string path, CompressionLevel compressionLevel = CompressionLevel.Fastest) =>
        PngEncoder.Write(path, RenderImage(), Width, ImageHeight, Stride, compressionLevel);

    private (int X, int Y) BeginTile(int frameNumber)
    {
        if (Count >= Capacity)
        {
            throw new InvalidOperationException($"The contact sheet already holds {Capacity} frames.");
        }

        (int x0, int y0) = GetThumbnailOrigin(Count);

        // A canvas over just this tile's label strip clips long labels to the tile.
        int stripOffset = ((y0 + ThumbnailHeight) * Stride) + (x0 * 4);
        var strip = new XrgbCanvas(_pixels.AsSpan(stripOffset), ThumbnailWidth, LabelHeight, Stride);
        Span<char> text = stackalloc char[16];
        frameNumber.TryFormat(text, out int length, default, CultureInfo.InvariantCulture);
        int textWidth = TinyFont.MeasureWidth(length, LabelScale);
        strip.FillRect(0, 0, ThumbnailWidth, LabelHeight, BackgroundColor);
        TinyFont.DrawText(
            strip, Math.Max(0, (ThumbnailWidth - textWidth) / 2), LabelPadding, text[..length], LabelScale, LabelColor);
        return (x0, y0);
    }

    private void SampleRow(ReadOnlySpan<byte> sourceRow, int sheetY, int sheetX)
    {
        ReadOnlySpan<uint> source = MemoryMarshal.Cast<byte, uint>(sourceRow);
        Span<uint> destination = MemoryMarshal.Cast<byte, uint>(
            _pixels.AsSpan((sheetY * Stride) + (sheetX * 4), ThumbnailWidth * 4));
        int[] map = _sourceX;
        for (int tx = 0; tx < destination.Length; tx++)
        {
            destination[tx] = source[map[tx]];
        }
    }
}
