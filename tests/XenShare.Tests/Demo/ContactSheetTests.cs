using System.Buffers.Binary;
using XenShare.Cli.Demo;

namespace XenShare.Tests.Demo;

public sealed class ContactSheetTests
{
    [Fact]
    public void Dimensions_FollowGridLayout()
    {
        var sheet = new ContactSheet(1280, 720, capacity: 6, columns: 4, thumbnailWidth: 320, border: 8);
        Assert.Equal(4, sheet.Columns);
        Assert.Equal(2, sheet.Rows);
        Assert.Equal(320, sheet.ThumbnailWidth);
        Assert.Equal(180, sheet.ThumbnailHeight);
        int labelHeight = sheet.LabelHeight;
        Assert.True(labelHeight >= 7 * ContactSheet.LabelScale);
        Assert.Equal((4 * 320) + (5 * 8), sheet.Width);
        Assert.Equal((2 * (180 + labelHeight)) + (3 * 8), sheet.Height);
        Assert.Equal(sheet.Width * 4, sheet.Stride);
        Assert.Equal(sheet.Stride * sheet.Height, sheet.Pixels.Length);
        Assert.Equal((8, 8), sheet.GetThumbnailOrigin(0));
        Assert.Equal((8 + 328, 8 + 180 + labelHeight + 8), sheet.GetThumbnailOrigin(5));
    }

    [Fact]
    public void FewerFramesThanColumns_UsesOneRow()
    {
        var sheet = new ContactSheet(101, 77, capacity: 3, columns: 8, thumbnailWidth: 50, border: 4);
        Assert.Equal(3, sheet.Columns);
        Assert.Equal(1, sheet.Rows);
        Assert.Equal(38, sheet.ThumbnailHeight); // round(50 * 77 / 101)
        Assert.Equal((3 * 50) + (4 * 4), sheet.Width);
    }

    [Fact]
    public void Thumbnails_SampleTheSourceFrames_AndCarryLabels()
    {
        const int Width = 640;
        const int Height = 360;
        var sheet = new ContactSheet(Width, Height, capacity: 4, columns: 2, thumbnailWidth: 160);
        var frame = new byte[Width * Height * 4];
        int[] frameNumbers = [10, 20, 30];
        foreach (int n in frameNumbers)
        {
            TestPattern.Draw(frame, Width, Height, Width * 4, n, n % 2);
            sheet.AddFrame(frame, Width * 4, n);
        }

        Assert.Equal(3, sheet.Count);
        for (int tile = 0; tile < 3; tile++)
        {
            (int ox, int oy) = sheet.GetThumbnailOrigin(tile);
            for (int ty = 0; ty < sheet.ThumbnailHeight; ty += 3)
            {
                for (int tx = 0; tx < sheet.ThumbnailWidth; tx += 5)
                {
                    int sx = ((2 * tx) + 1) * Width / (2 * sheet.ThumbnailWidth);
                    int sy = ((2 * ty) + 1) * Height / (2 * sheet.ThumbnailHeight);
                    uint expected = TestPattern.ExpectedPixel(sx, sy, Width, Height, frameNumbers[tile], frameNumbers[tile] % 2);
                    Assert.Equal(expected, SheetPixel(sheet, ox + tx, oy + ty));
                }
            }

            // The label strip under the thumbnail has some label ink.
            bool ink = false;
            for (int y = oy + sheet.ThumbnailHeight; y < oy + sheet.ThumbnailHeight + sheet.LabelHeight && !ink; y++)
            {
                for (int x = ox; x < ox + sheet.ThumbnailWidth && !ink; x++)
                {
                    ink = SheetPixel(sheet, x, y) == ContactSheet.LabelColor;
                }
            }

            Assert.True(ink, $"tile {tile} has no label");
        }

        // The unused fourth tile and the borders stay background.
        (int x3, int y3) = (sheet.Border + sheet.ThumbnailWidth + sheet.Border + 10, sheet.Height - sheet.Border - 10);
        Assert.Equal(ContactSheet.BackgroundColor, SheetPixel(sheet, x3, y3));
        Assert.Equal(ContactSheet.BackgroundColor, SheetPixel(sheet, 0, 0));

        sheet.AddFrame(frame, Width * 4, 40);
        Assert.Throws<InvalidOperationException>(() => sheet.AddFrame(frame, Width * 4, 50));
    }

    [Fact]
    public void LongLabels_AreClippedToTheirTile()
    {
        var sheet = new ContactSheet(64, 64, capacity: 2, columns: 2, thumbnailWidth: 16, border: 2);
        var frame = new byte[64 * 64 * 4];
        TestPattern.Draw(frame, 64, 64, 64 * 4, 0, 0);
        sheet.AddFrame(frame, 64 * 4, int.MaxValue);
        (int ox, int oy) = sheet.GetThumbnailOrigin(1);

        // The gap between the tiles and the second tile's label strip stay background.
        for (int y = oy + sheet.ThumbnailHeight; y < oy + sheet.ThumbnailHeight + sheet.LabelHeight; y++)
        {
            for (int x = ox - sheet.Border; x < ox + sheet.ThumbnailWidth; x++)
            {
                Assert.Equal(ContactSheet.BackgroundColor, SheetPixel(sheet, x, y));
            }
        }
    }

    [Fact]
    public void RowReaderOverload_MatchesSpanOverload()
    {
        const int Width = 301;
        const int Height = 167;
        int stride = (Width * 4) + 12;
        var frame = new byte[stride * Height];
        TestPattern.Draw(frame, Width, Height, stride, 7, 1);

        var a = new ContactSheet(Width, Height, 1, thumbnailWidth: 97);
        a.AddFrame(frame, stride, 7);

        var requested = new List<int>();
        var b = new ContactSheet(Width, Height, 1, thumbnailWidth: 97);
        b.AddFrame(
            (y, row) =>
            {
                requested.Add(y);
                frame.AsSpan(y * stride, Width * 4).CopyTo(row);
            },
            7);

        Assert.True(a.Pixels.SequenceEqual(b.Pixels));
        Assert.Equal(b.ThumbnailHeight, requested.Count);
        Assert.Equal(requested.Order(), requested);
    }

    [Fact]
    public void Save_WritesDecodablePng()
    {
        string path = Path.Combine(Path.GetTempPath(), $"xenshare-sheet-test-{Guid.NewGuid():N}.png");
        try
        {
            const int Width = 128;
            const int Height = 96;
            var sheet = new ContactSheet(Width, Height, capacity: 5, columns: 3, thumbnailWidth: 64);
            var frame = new byte[Width * Height * 4];
            for (int i = 0; i < 5; i++)
            {
                TestPattern.Draw(frame, Width, Height, Width * 4, i * 30, i & 1);
                sheet.AddFrame(frame, Width * 4, i * 30);
            }

            sheet.Save(path);
            PngImage image = PngDecoder.DecodeFile(path);
            Assert.Equal(sheet.Width, image.Width);
            Assert.Equal(sheet.Height, image.Height);
            Assert.Equal(SheetPixel(sheet, 40, 20), image.GetRgb(40, 20));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>The caption (the demo's stamp) is drawn under the grid of the saved image, wrapped at item
    /// boundaries to the sheet's width, and leaves the grid as it was.</summary>
    [Fact]
    public void Caption_IsDrawnUnderTheGrid_WrappedAtItems()
    {
        const int Width = 640;
        const int Height = 360;
        var sheet = new ContactSheet(Width, Height, capacity: 4, columns: 4, thumbnailWidth: 160);
        var frame = new byte[Width * Height * 4];
        TestPattern.Draw(frame, Width, Height, Width * 4, 3, 1);
        sheet.AddFrame(frame, Width * 4, 3);
        byte[] grid = sheet.Pixels.ToArray();
        Assert.Equal(0, sheet.CaptionHeight);
        Assert.Same(sheet.RenderImage(), sheet.RenderImage());   // no caption: the grid itself

        sheet.SetCaption(
        [
            ["xenshare demo 640x360", "mode: zero-copy (dma-buf scan-out)", "backend: dom2 (driver domain)", "fe-alloc", "2 MiB extents"],
            ["frames shown: 60", "CPU bytes copied: 0"],
        ]);
        Assert.Equal(2, sheet.CaptionScale);
        int max = sheet.CaptionCharactersPerLine;
        Assert.Equal((sheet.Width - (2 * sheet.Border) + 2) / 12, max);
        Assert.All(sheet.CaptionLines, line => Assert.InRange(line.Length, 1, max));
        // Items stay whole where they fit; the second paragraph starts a line of its own.
        Assert.Equal("frames shown: 60  CPU bytes copied: 0", sheet.CaptionLines[^1]);
        Assert.Contains(sheet.CaptionLines, line => line.Contains("mode: zero-copy (dma-buf scan-out)", StringComparison.Ordinal));
        Assert.Equal(sheet.Height + (sheet.CaptionLines.Count * sheet.CaptionLineHeight) + sheet.Border, sheet.ImageHeight);

        byte[] image = sheet.RenderImage();
        Assert.Equal(sheet.Stride * sheet.ImageHeight, image.Length);
        Assert.True(image.AsSpan(0, grid.Length).SequenceEqual(grid));
        Assert.True(sheet.Pixels.SequenceEqual(grid));
        for (int line = 0; line < sheet.CaptionLines.Count; line++)
        {
            string text = sheet.CaptionLines[line];
            (int x0, int y0) = sheet.GetCaptionOrigin(line);
            for (int y = -1; y <= TinyFont.GlyphHeight * 2; y++)
            {
                for (int x = -1; x <= TinyFont.MeasureWidth(text.Length, 2); x++)
                {
                    uint expected = TinyFont.IsInk(text, x, y, 2) ? ContactSheet.LabelColor : ContactSheet.BackgroundColor;
                    int at = ((y0 + y) * sheet.Stride) + ((x0 + x) * 4);
                    Assert.Equal(expected, BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(at)) & 0xFFFFFF);
                }
            }
        }

        string path = Path.Combine(Path.GetTempPath(), $"xenshare-sheet-caption-{Guid.NewGuid():N}.png");
        try
        {
            sheet.Save(path);
            var decoded = PngDecoder.DecodeFile(path);
            Assert.Equal((sheet.Width, sheet.ImageHeight), (decoded.Width, decoded.Height));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A narrow sheet draws the caption at scale 1, and an item longer than a line wraps at its spaces (a
    /// word longer than a line is cut).</summary>
    [Fact]
    public void Caption_OnANarrowSheet_WrapsLongItems()
    {
        var sheet = new ContactSheet(64, 64, capacity: 1, thumbnailWidth: 64);
        sheet.SetCaption([["display path: 123.4 us per flip (median, PNG writing excluded)", "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEF"]]);
        Assert.Equal(1, sheet.CaptionScale);
        int max = sheet.CaptionCharactersPerLine;
        Assert.True(max < 40);
        Assert.All(sheet.CaptionLines, line => Assert.InRange(line.Length, 1, max));
        int cut = sheet.CaptionLines.ToList().FindIndex(line => line.StartsWith('A'));
        Assert.True(cut > 1);
        Assert.Equal("display path: 123.4 us per flip (median, PNG writing excluded)", string.Join(" ", sheet.CaptionLines.Take(cut)));
        Assert.Equal("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCDEF", string.Concat(sheet.CaptionLines.Skip(cut)));
    }

    /// <summary>The font has the letters and signs of the stamp; lower case draws as upper case.</summary>
    [Fact]
    public void TinyFont_HasTheStampsCharacters()
    {
        foreach (char ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.,:/()_=+%'<>")
        {
            Assert.True(TinyFont.HasGlyph(ch), $"'{ch}'");
            Assert.Contains(Enumerable.Range(0, TinyFont.GlyphHeight), row => Enumerable.Range(0, TinyFont.GlyphWidth).Any(col => TinyFont.IsSet(ch, col, row)));
        }
        for (int row = 0; row < TinyFont.GlyphHeight; row++)
            for (int col = 0; col < TinyFont.GlyphWidth; col++)
            {
                Assert.Equal(TinyFont.IsSet('M', col, row), TinyFont.IsSet('m', col, row));
                Assert.False(TinyFont.IsSet(' ', col, row));
                Assert.False(TinyFont.IsSet('µ', col, row));
            }
        Assert.False(TinyFont.HasGlyph(' '));
    }

    private static uint SheetPixel(ContactSheet sheet, int x, int y) =>
        BinaryPrimitives.ReadUInt32LittleEndian(sheet.Pixels[((y * sheet.Stride) + (x * 4))..]) & 0xFFFFFF;
}
