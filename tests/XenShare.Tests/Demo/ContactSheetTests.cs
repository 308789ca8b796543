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

    private static uint SheetPixel(ContactSheet sheet, int x, int y) =>
        BinaryPrimitives.ReadUInt32LittleEndian(sheet.Pixels[((y * sheet.Stride) + (x * 4))..]) & 0xFFFFFF;
}
