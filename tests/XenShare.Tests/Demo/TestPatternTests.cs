using System.Buffers.Binary;
using System.Diagnostics;
using XenShare.Cli.Demo;
using Xunit.Abstractions;

namespace XenShare.Tests.Demo;

public sealed class TestPatternTests(ITestOutputHelper output)
{
    private const byte Sentinel = 0xA5;

    private static byte[] Render(int width, int height, int stride, int frame, int bufferIndex)
    {
        var buffer = new byte[stride * height];
        buffer.AsSpan().Fill(Sentinel);
        TestPattern.Draw(buffer, width, height, stride, frame, bufferIndex);
        return buffer;
    }

    private static uint Pixel(byte[] buffer, int stride, int x, int y) =>
        BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan((y * stride) + (x * 4)));

    private static void AssertPixel(byte[] buffer, int width, int height, int stride, int frame, int bufferIndex, int x, int y)
    {
        uint expected = TestPattern.ExpectedPixel(x, y, width, height, frame, bufferIndex);
        uint actual = Pixel(buffer, stride, x, y);
        if (expected != actual)
        {
            Assert.Fail($"{width}x{height} frame {frame} B{bufferIndex} pixel ({x},{y}): expected {expected:X8}, drew {actual:X8}.");
        }
    }

    public static TheoryData<int, int, int> Sizes => new()
    {
        { 64, 64, 0 },
        { 65, 64, 12 },
        { 97, 71, 4 },
        { 640, 480, 0 },
        { 1279, 719, 36 },
        { 1920, 1080, 0 },
    };

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Draw_AgreesWithExpectedPixel(int width, int height, int extraStride)
    {
        int stride = (width * 4) + extraStride;
        int[] frames = [0, 1, 2, 9, 10, 37, 99, 1000, 123456, int.MaxValue];
        bool small = width * height <= 100 * 100;
        foreach (int frame in frames)
        {
            for (int bufferIndex = 0; bufferIndex < 2; bufferIndex++)
            {
                byte[] buffer = Render(width, height, stride, frame, bufferIndex);
                var label = TestPattern.FrameLabelBounds(width, height, frame);
                int topBand = Math.Min(height, label.Y + label.Height + 2);
                for (int y = 0; y < height; y++)
                {
                    // Every pixel of small frames and of the label band; a coprime-step grid elsewhere.
                    bool fullRow = small || y < topBand;
                    int step = fullRow ? 1 : 7;
                    if (!fullRow && y % 5 != 0 && y != height - 1)
                    {
                        continue;
                    }

                    for (int x = (y * 3) % step; x < width; x += step)
                    {
                        AssertPixel(buffer, width, height, stride, frame, bufferIndex, x, y);
                    }

                    AssertPixel(buffer, width, height, stride, frame, bufferIndex, width - 1, y);

                    // Bytes between rows are not touched.
                    for (int i = width * 4; i < stride && y < height - 1; i++)
                    {
                        Assert.Equal(Sentinel, buffer[(y * stride) + i]);
                    }
                }
            }
        }
    }

    [Fact]
    public void Draw_AgreesWithExpectedPixel_AroundTheMovingBox()
    {
        const int Width = 333;
        const int Height = 200;
        for (int frame = 0; frame < 120; frame += 7)
        {
            byte[] buffer = Render(Width, Height, Width * 4, frame, frame & 1);

            // Every pixel for a handful of frames covers the box edges wherever it is.
            for (int y = 0; y < Height; y++)
            {
                for (int x = 0; x < Width; x++)
                {
                    AssertPixel(buffer, Width, Height, Width * 4, frame, frame & 1, x, y);
                }
            }
        }
    }

    [Fact]
    public void XByte_IsZero()
    {
        byte[] buffer = Render(64, 64, 256, 5, 1);
        for (int i = 3; i < buffer.Length; i += 4)
        {
            Assert.Equal(0, buffer[i]);
        }
    }

    [Fact]
    public void ConsecutiveFrames_Differ()
    {
        const int Width = 320;
        const int Height = 240;
        byte[] previous = Render(Width, Height, Width * 4, 0, 0);
        for (int frame = 1; frame < 200; frame++)
        {
            byte[] current = Render(Width, Height, Width * 4, frame, 0);
            Assert.False(previous.AsSpan().SequenceEqual(current), $"frame {frame} equals frame {frame - 1}");
            previous = current;
        }
    }

    [Fact]
    public void Bars_ScrollLeftByFixedStep()
    {
        const int Width = 1280;
        const int Height = 720;
        int y = Height - 1; // the box (120 px) is in the top-left corner for frames 0 and 1
        byte[] frame0 = Render(Width, Height, Width * 4, 0, 0);
        byte[] frame1 = Render(Width, Height, Width * 4, 1, 0);
        for (int x = 0; x + TestPattern.ScrollPixelsPerFrame < Width; x++)
        {
            Assert.Equal(Pixel(frame0, Width * 4, x + TestPattern.ScrollPixelsPerFrame, y), Pixel(frame1, Width * 4, x, y));
        }

        // All eight bars are visible on a row.
        var colors = new HashSet<uint>();
        for (int x = 0; x < Width; x++)
        {
            colors.Add(Pixel(frame0, Width * 4, x, y));
        }

        Assert.Equal(8, colors.Count);
    }

    [Theory]
    [InlineData(64, 64)]
    [InlineData(1280, 720)]
    public void DigitsRegion_DiffersBetweenFrame1And2(int width, int height)
    {
        byte[] frame1 = Render(width, height, width * 4, 1, 0);
        byte[] frame2 = Render(width, height, width * 4, 2, 0);
        var bounds = TestPattern.FrameLabelBounds(width, height, 1);
        Assert.Equal(bounds, TestPattern.FrameLabelBounds(width, height, 2));
        int differing = 0;
        int ink = 0;
        for (int y = bounds.Y; y < bounds.Y + bounds.Height; y++)
        {
            for (int x = bounds.X; x < bounds.X + bounds.Width; x++)
            {
                uint a = Pixel(frame1, width * 4, x, y);
                if (a != Pixel(frame2, width * 4, x, y))
                {
                    differing++;
                }

                if (a == TestPattern.LabelForeground)
                {
                    ink++;
                }

                Assert.True(a is TestPattern.LabelForeground or TestPattern.LabelBackground);
            }
        }

        Assert.True(differing > 0, "digit region identical for frames 1 and 2");
        Assert.True(ink > 0, "no digit ink drawn");
    }

    [Fact]
    public void BufferLabel_DiffersBetweenBuffers()
    {
        const int Width = 640;
        const int Height = 360;
        byte[] b0 = Render(Width, Height, Width * 4, 5, 0);
        byte[] b1 = Render(Width, Height, Width * 4, 5, 1);
        int differing = 0;
        for (int y = 0; y < Height; y++)
        {
            for (int x = 0; x < Width; x++)
            {
                if (Pixel(b0, Width * 4, x, y) != Pixel(b1, Width * 4, x, y))
                {
                    differing++;
                    Assert.True(x > Width / 2 && y < Height / 4, $"unexpected difference at ({x},{y})");
                }
            }
        }

        Assert.True(differing > 0);
    }

    [Fact]
    public void Draw_RejectsBadArguments()
    {
        Assert.Throws<ArgumentException>(() => TestPattern.Draw(new byte[(64 * 64 * 4) - 1], 64, 64, 256, 0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TestPattern.Draw(new byte[64 * 64 * 4], 64, 64, 256, -1, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TestPattern.ExpectedPixel(64, 0, 64, 64, 0, 0));
    }

    [Fact]
    public void Draw1920x1080_IsFast()
    {
        const int Width = 1920;
        const int Height = 1080;
        var buffer = new byte[Width * Height * 4];
        TestPattern.Draw(buffer, Width, Height, Width * 4, 0, 0); // warm-up
        var times = new List<double>();
        for (int frame = 1; frame <= 9; frame++)
        {
            long start = Stopwatch.GetTimestamp();
            TestPattern.Draw(buffer, Width, Height, Width * 4, frame, frame & 1);
            times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }

        times.Sort();
        output.WriteLine($"1920x1080 draw: median {times[4]:F2} ms, min {times[0]:F2} ms");
        Assert.True(times[4] < 100, $"median draw time {times[4]:F1} ms"); // target: a few ms; loose for shared CI
    }
}
