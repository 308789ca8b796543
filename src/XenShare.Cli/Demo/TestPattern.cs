using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;

namespace XenShare.Cli.Demo;

/// <summary>
/// The demo's animated test picture, drawn into XRGB8888 memory (little-endian words 0x00RRGGBB). Layers, bottom to
/// top: eight 75% colour bars scrolling left by <see cref="ScrollPixelsPerFrame"/> pixels per frame; a bouncing white
/// box with a black border; the frame number in large digits on a black plate at the top-left; the buffer label
/// ("B0", "B1", ...) on a black plate at the top-right. <see cref="ExpectedPixel"/> is the per-pixel reference.
/// </summary>
internal static class TestPattern
{
    /// <summary>Horizontal scroll of the colour bars per frame, in pixels.</summary>
    public const int ScrollPixelsPerFrame = 4;

    /// <summary>Horizontal box movement per frame, in pixels (before bouncing).</summary>
    public const int BoxStepX = 7;

    /// <summary>Vertical box movement per frame, in pixels (before bouncing).</summary>
    public const int BoxStepY = 5;

    /// <summary>Fill colour of the moving box.</summary>
    public const uint BoxColor = 0xFFFFFF;

    /// <summary>Border colour of the moving box.</summary>
    public const uint BoxBorderColor = 0x000000;

    /// <summary>Colour of label digits.</summary>
    public const uint LabelForeground = 0xFFFFFF;

    /// <summary>Colour of the plates behind the labels.</summary>
    public const uint LabelBackground = 0x000000;

    /// <summary>Smallest width or height this pattern is designed for (smaller sizes still draw, possibly clipped).</summary>
    public const int MinimumSize = 64;

    /// <summary>Gets the bar colours, left to right at frame 0: white, yellow, cyan, green, magenta, red, blue, black.</summary>
    public static ReadOnlySpan<uint> BarColors =>
        [0xBFBFBF, 0xBFBF00, 0x00BFBF, 0x00BF00, 0xBF00BF, 0xBF0000, 0x0000BF, 0x101010];

    /// <summary>Draws frame <paramref name="frame"/> of the pattern for buffer <paramref name="bufferIndex"/>.</summary>
    /// <param name="xrgb">Destination; row <c>y</c> starts at <c>y * stride</c>. Bytes between rows are untouched.</param>
    /// <param name="width">Width in pixels (at least 1; designed for at least <see cref="MinimumSize"/>).</param>
    /// <param name="height">Height in pixels (at least 1).</param>
    /// <param name="stride">Bytes between row starts, at least <c>width * 4</c>.</param>
    /// <param name="frame">Frame number, non-negative.</param>
    /// <param name="bufferIndex">Buffer index shown as "B&lt;n&gt;", non-negative.</param>
    public static void Draw(Span<byte> xrgb, int width, int height, int stride, int frame, int bufferIndex)
    {
        PngEncoder.ValidateFrame(xrgb.Length, width, height, stride);
        ArgumentOutOfRangeException.ThrowIfNegative(frame);
        ArgumentOutOfRangeException.ThrowIfNegative(bufferIndex);
        var layout = new Layout(width, height, frame, bufferIndex);
        var canvas = new XrgbCanvas(xrgb, width, height, stride);

        // Bars: identical on every row, so render row 0 as runs and copy it down.
        Span<uint> row0 = canvas.Row(0);
        int x = 0;
        while (x < width)
        {
            int pos = (x + layout.Shift) % layout.Period;
            int bar = pos / layout.BarWidth;
            int run = Math.Min(layout.BarWidth - (pos % layout.BarWidth), width - x);
            row0.Slice(x, run).Fill(XrgbCanvas.ToWord(BarColors[bar]));
            x += run;
        }

        ReadOnlySpan<byte> template = xrgb[..(width * 4)];
        for (int y = 1; y < height; y++)
        {
            template.CopyTo(xrgb.Slice(y * stride, width * 4));
        }

        // Box: border colour over the whole square, fill colour inside.
        canvas.FillRect(layout.BoxX, layout.BoxY, layout.BoxSize, layout.BoxSize, BoxBorderColor);
        int inner = layout.BoxSize - (2 * layout.BoxBorder);
        canvas.FillRect(layout.BoxX + layout.BoxBorder, layout.BoxY + layout.BoxBorder, inner, inner, BoxColor);

        Span<char> text = stackalloc char[Layout.MaxTextLength];
        int n = Layout.FormatFrame(frame, text);
        DrawLabel(canvas, layout.FrameLabelX, layout.LabelY, layout.Scale, text[..n]);
        n = Layout.FormatBuffer(bufferIndex, text);
        DrawLabel(canvas, layout.BufferLabelX, layout.LabelY, layout.Scale, text[..n]);
    }

    /// <summary>Returns the exact 0x00RRGGBB value <see cref="Draw"/> writes at (<paramref name="x"/>, <paramref name="y"/>).</summary>
    /// <param name="x">Column, 0 to <paramref name="width"/> - 1.</param>
    /// <param name="y">Row, 0 to <paramref name="height"/> - 1.</param>
    /// <param name="width">Frame width in pixels.</param>
    /// <param name="height">Frame height in pixels.</param>
    /// <param name="frame">Frame number, non-negative.</param>
    /// <param name="bufferIndex">Buffer index, non-negative.</param>
    /// <returns>The pixel colour with the X byte zero.</returns>
    public static uint ExpectedPixel(int x, int y, int width, int height, int frame, int bufferIndex)
    {
        PngEncoder.ValidateDimensions(width, height);
        ArgumentOutOfRangeException.ThrowIfNegative(x);
        ArgumentOutOfRangeException.ThrowIfNegative(y);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(x, width);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(y, height);
        ArgumentOutOfRangeException.ThrowIfNegative(frame);
        ArgumentOutOfRangeException.ThrowIfNegative(bufferIndex);
        var layout = new Layout(width, height, frame, bufferIndex);
        Span<char> text = stackalloc char[Layout.MaxTextLength];

        // Topmost layer first.
        int n = Layout.FormatBuffer(bufferIndex, text);
        if (TryLabelPixel(x, y, layout.BufferLabelX, layout.LabelY, layout.Scale, text[..n], out uint color))
        {
            return color;
        }

        n = Layout.FormatFrame(frame, text);
        if (TryLabelPixel(x, y, layout.FrameLabelX, layout.LabelY, layout.Scale, text[..n], out color))
        {
            return color;
        }

        int bx = x - layout.BoxX;
        int by = y - layout.BoxY;
        if (bx >= 0 && by >= 0 && bx < layout.BoxSize && by < layout.BoxSize)
        {
            int far = layout.BoxSize - layout.BoxBorder;
            bool inside = bx >= layout.BoxBorder && by >= layout.BoxBorder && bx < far && by < far;
            return inside ? BoxColor : BoxBorderColor;
        }

        return BarColors[((x + layout.Shift) % layout.Period) / layout.BarWidth];
    }

    /// <summary>Gets the rectangle of the frame-number plate (top-left label) for a frame size and frame number.</summary>
    /// <param name="width">Frame width.</param>
    /// <param name="height">Frame height.</param>
    /// <param name="frame">Frame number.</param>
    /// <returns>Plate position and size in pixels (may extend past the right edge for long numbers on tiny frames).</returns>
    public static (int X, int Y, int Width, int Height) FrameLabelBounds(int width, int height, int frame)
    {
        PngEncoder.ValidateDimensions(width, height);
        ArgumentOutOfRangeException.ThrowIfNegative(frame);
        var layout = new Layout(width, height, frame, 0);
        Span<char> text = stackalloc char[Layout.MaxTextLength];
        int n = Layout.FormatFrame(frame, text);
        return (layout.FrameLabelX, layout.LabelY, PlateWidth(n, layout.Scale), PlateHeight(layout.Scale));
    }

    private static int PlateWidth(int chars, int scale) => TinyFont.MeasureWidth(chars, scale) + (2 * scale);

    private static int PlateHeight(int scale) => (TinyFont.GlyphHeight * scale) + (2 * scale);

    private static void DrawLabel(XrgbCanvas canvas, int plateX, int plateY, int scale, ReadOnlySpan<char> text)
    {
        canvas.FillRect(plateX, plateY, PlateWidth(text.Length, scale), PlateHeight(scale), LabelBackground);
        TinyFont.DrawText(canvas, plateX + scale, plateY + scale, text, scale, LabelForeground);
    }

    private static bool TryLabelPixel(
        int x, int y, int plateX, int plateY, int scale, ReadOnlySpan<char> text, out uint color)
    {
        int lx = x - plateX;
        int ly = y - plateY;
        if (lx < 0 || ly < 0 || lx >= PlateWidth(text.Length, scale) || ly >= PlateHeight(scale))
        {
            color = 0;
            return false;
        }

        color = TinyFont.IsInk(text, lx - scale, ly - scale, scale) ? LabelForeground : LabelBackground;
        return true;
    }

    /// <summary>Geometry shared by <see cref="Draw"/> and <see cref="ExpectedPixel"/>.</summary>
    private readonly struct Layout
    {
        public const int MaxTextLength = 16;

        public Layout(int width, int height, int frame, int bufferIndex)
        {
            BarWidth = Math.Max(1, width / 8);
            Period = BarWidth * 8;
            Shift = (int)((long)frame * ScrollPixelsPerFrame % Period);

            int minSide = Math.Min(width, height);
            BoxSize = Math.Max(1, minSide / 6);
            BoxBorder = Math.Max(1, BoxSize / 12);
            BoxX = Triangle((long)frame * BoxStepX, width - BoxSize);
            BoxY = Triangle((long)frame * BoxStepY, height - BoxSize);

            Scale = Math.Max(1, minSide / 90);
            LabelY = 2 * Scale;
            FrameLabelX = 2 * Scale;
            int bufferChars = 1 + CountDigits(bufferIndex);
            BufferLabelX = width - (2 * Scale) - PlateWidth(bufferChars, Scale);
        }

        public int BarWidth { get; }

        public int Period { get; }

        public int Shift { get; }

        public int BoxSize { get; }

        public int BoxBorder { get; }

        public int BoxX { get; }

        public int BoxY { get; }

        public int Scale { get; }

        public int LabelY { get; }

        public int FrameLabelX { get; }

        public int BufferLabelX { get; }

        public static int FormatFrame(int frame, Span<char> destination)
        {
            frame.TryFormat(destination, out int written, default, CultureInfo.InvariantCulture);
            return written;
        }

        public static int FormatBuffer(int bufferIndex, Span<char> destination)
        {
            destination[0] = 'B';
            bufferIndex.TryFormat(destination[1..], out int written, default, CultureInfo.InvariantCulture);
            return written + 1;
        }

        private static int CountDigits(int value)
        {
            int digits = 1;
            while (value >= 10)
            {
                value /= 10;
                digits++;
            }

            return digits;
        }

        /// <summary>Bounces <paramref name="t"/> between 0 and <paramref name="range"/>.</summary>
        private static int Triangle(long t, int range)
        {
            if (range <= 0)
            {
                return 0;
            }

            long p = t % (2L * range);
            return (int)(p <= range ? p : (2L * range) - p);
        }
    }
}

/// <summary>A clipped view of an XRGB8888 buffer with rectangle fills.</summary>
internal readonly ref struct XrgbCanvas
{
    private readonly Span<byte> _buffer;

    /// <summary>Wraps <paramref name="buffer"/>; the caller has validated the frame description.</summary>
    /// <param name="buffer">Pixel memory.</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="stride">Bytes between row starts.</param>
    public XrgbCanvas(Span<byte> buffer, int width, int height, int stride)
    {
        _buffer = buffer;
        Width = width;
        Height = height;
        Stride = stride;
    }

    /// <summary>Gets the width in pixels.</summary>
    public int Width { get; }

    /// <summary>Gets the height in pixels.</summary>
    public int Height { get; }

    /// <summary>Gets the bytes between row starts.</summary>
    public int Stride { get; }

    /// <summary>Converts 0x00RRGGBB to the in-memory word value (bytes B, G, R, 0 on any endianness).</summary>
    /// <param name="rgb">Colour.</param>
    /// <returns>The native-endian word to store.</returns>
    public static uint ToWord(uint rgb) =>
        BitConverter.IsLittleEndian ? rgb & 0xFFFFFF : BinaryPrimitives.ReverseEndianness(rgb & 0xFFFFFF);

    /// <summary>Returns row <paramref name="y"/> as native-endian words.</summary>
    /// <param name="y">Row index.</param>
    /// <returns>The row's <see cref="Width"/> pixels.</returns>
    public Span<uint> Row(int y) => MemoryMarshal.Cast<byte, uint>(_buffer.Slice(y * Stride, Width * 4));

    /// <summary>Fills a rectangle, clipped to the canvas.</summary>
    /// <param name="x">Left.</param>
    /// <param name="y">Top.</param>
    /// <param name="w">Width.</param>
    /// <param name="h">Height.</param>
    /// <param name="rgb">Colour 0x00RRGGBB.</param>
    public void FillRect(int x, int y, int w, int h, uint rgb)
    {
        int x0 = Math.Max(x, 0);
        int y0 = Math.Max(y, 0);
        int x1 = Math.Min(x + w, Width);
        int y1 = Math.Min(y + h, Height);
        if (x0 >= x1 || y0 >= y1)
        {
            return;
        }

        uint word = ToWord(rgb);
        for (int row = y0; row < y1; row++)
        {
            Row(row)[x0..x1].Fill(word);
        }
    }
}

/// <summary>A 5x7 bitmap font (digits, capitals - lower case is drawn as upper case - and the punctuation of the
/// contact sheet's stamp), drawn at an integer scale. Other characters are blank.</summary>
internal static class TinyFont
{
    /// <summary>Glyph width in font pixels.</summary>
    public const int GlyphWidth = 5;

    /// <summary>Glyph height in font pixels.</summary>
    public const int GlyphHeight = 7;

    /// <summary>Horizontal distance between glyph origins in font pixels (one blank column).</summary>
    public const int Advance = 6;

    /// <summary>The characters with a glyph, in the order of <see cref="Glyphs"/>.</summary>
    private const string Characters = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ-.,:/()_=+%'<>";

    // Seven rows per glyph, bit 4 = leftmost column, in the order of Characters; then blank.
    private static ReadOnlySpan<byte> Glyphs =>
    [
        0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E, // 0
        0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E, // 1
        0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F, // 2
        0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E, // 3
        0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02, // 4
        0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E, // 5
        0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E, // 6
        0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08, // 7
        0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E, // 8
        0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C, // 9
        0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, // A
        0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E, // B
        0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E, // C
        0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C, // D
        0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F, // E
        0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10, // F
        0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F, // G
        0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11, // H
        0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E, // I
        0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C, // J
        0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11, // K
        0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F, // L
        0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11, // M
        0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11, // N
        0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, // O
        0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10, // P
        0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D, // Q
        0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11, // R
        0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E, // S
        0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04, // T
        0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E, // U
        0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04, // V
        0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A, // W
        0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11, // X
        0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, // Y
        0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F, // Z
        0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00, // -
        0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C, // .
        0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08, // ,
        0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00, // :
        0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00, // /
        0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02, // (
        0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08, // )
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F, // _
        0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00, // =
        0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00, // +
        0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03, // %
        0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00, // '
        0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02, // <
        0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08, // >
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // blank (any other character)
    ];

    /// <summary>Whether <paramref name="c"/> has a glyph (lower case letters count as their capitals).</summary>
    /// <param name="c">Character.</param>
    /// <returns>True when it is drawn; false when it is blank (a space, or a character the font lacks).</returns>
    public static bool HasGlyph(char c) => Characters.Contains(char.ToUpperInvariant(c), StringComparison.Ordinal);

    /// <summary>Width in pixels of <paramref name="length"/> characters at <paramref name="scale"/> (no trailing gap).</summary>
    /// <param name="length">Number of characters.</param>
    /// <param name="scale">Pixels per font pixel.</param>
    /// <returns>The text width, 0 for empty text.</returns>
    public static int MeasureWidth(int length, int scale) =>
        length <= 0 ? 0 : (length * Advance * scale) - scale;

    /// <summary>Whether font pixel (<paramref name="column"/>, <paramref name="row"/>) of <paramref name="c"/> is set.</summary>
    /// <param name="c">Character.</param>
    /// <param name="column">0 to 4.</param>
    /// <param name="row">0 to 6.</param>
    /// <returns>True for ink.</returns>
    public static bool IsSet(char c, int column, int row)
    {
        if ((uint)column >= GlyphWidth || (uint)row >= GlyphHeight)
        {
            return false;
        }

        return (Glyphs[(GlyphIndex(c) * GlyphHeight) + row] & (0x10 >> column)) != 0;
    }

    /// <summary>Whether text drawn with its top-left at the origin has ink at pixel (<paramref name="x"/>, <paramref name="y"/>).</summary>
    /// <param name="text">Text.</param>
    /// <param name="x">Pixel column relative to the text origin.</param>
    /// <param name="y">Pixel row relative to the text origin.</param>
    /// <param name="scale">Pixels per font pixel.</param>
    /// <returns>True for ink.</returns>
    public static bool IsInk(ReadOnlySpan<char> text, int x, int y, int scale)
    {
        if (x < 0 || y < 0)
        {
            return false;
        }

        int cell = Advance * scale;
        int index = x / cell;
        return index < text.Length && IsSet(text[index], (x % cell) / scale, y / scale);
    }

    /// <summary>Draws <paramref name="text"/> (ink only, transparent background) clipped to the canvas.</summary>
    /// <param name="canvas">Destination.</param>
    /// <param name="x">Left of the first glyph.</param>
    /// <param name="y">Top of the glyphs.</param>
    /// <param name="text">Text.</param>
    /// <param name="scale">Pixels per font pixel.</param>
    /// <param name="rgb">Ink colour 0x00RRGGBB.</param>
    public static void DrawText(XrgbCanvas canvas, int x, int y, ReadOnlySpan<char> text, int scale, uint rgb)
    {
        for (int i = 0; i < text.Length; i++)
        {
            int glyph = GlyphIndex(text[i]) * GlyphHeight;
            int left = x + (i * Advance * scale);
            for (int row = 0; row < GlyphHeight; row++)
            {
                byte bits = Glyphs[glyph + row];
                for (int column = 0; column < GlyphWidth; column++)
                {
                    if ((bits & (0x10 >> column)) != 0)
                    {
                        canvas.FillRect(left + (column * scale), y + (row * scale), scale, scale, rgb);
                    }
                }
            }
        }
    }

    private static int GlyphIndex(char c)
    {
        int index = Characters.IndexOf(char.ToUpperInvariant(c), StringComparison.Ordinal);
        return index < 0 ? Characters.Length : index;
    }
}
