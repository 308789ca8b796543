
namespace XenShare.Displif;

/// <summary>A minimal EDID 1.4 base block (128 bytes) for one resolution, which the backend writes for
/// GET_EDID (spec DP05): a digital display named after the connector, no established or standard
/// timings, and one detailed timing descriptor - the preferred mode - at 60 Hz with fixed blanking.</summary>
public static class DisplifEdid
{
    /// <summary>The size of the block.</summary>
    public const int Size = 128;

    /// <summary>The largest width or height an EDID detailed timing holds (12 bits).</summary>
    public const int MaxDimension = 4095;

    /// <summary>Writes the block for <paramref name="width"/> x <paramref name="height"/>.</summary>
    /// <param name="width">Width in pixels (1..4095).</param>
    /// <param name="height">Height in pixels (1..4095).</param>
    /// <param name="name">The monitor name (ASCII, at most 13 characters are kept).</param>
    /// <param name="destination">At least <see cref="Size"/> bytes.</param>
    /// <exception cref="ArgumentOutOfRangeException">A dimension is out of range.</exception>
    public static void Write(int width, int height, string name, Span<byte> destination)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(width, MaxDimension);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(height, MaxDimension);
        ArgumentNullException.ThrowIfNull(name);
        Span<byte> e = destination[..Size];
        e.Clear();
        ReadOnlySpan<byte> header = [0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x00];
        header.CopyTo(e);
        // Manufacturer "XEN" (three 5-bit letters, big-endian), product 1, serial 0, week 1, year 2024.
        int id = (('X' - '@') << 10) | (('E' - '@') << 5) | ('N' - '@');
        e[8] = (byte)(id >> 8);
        e[9] = (byte)id;
        e[10] = 1;
        e[16] = 1;
        e[17] = 2024 - 1990;
        e[18] = 1;        // EDID 1.4
        e[19] = 4;
        e[20] = 0x80;     // digital input
        e[21] = 0;        // size unknown (0 x 0 cm)
        e[22] = 0;
        e[23] = 120;      // gamma 2.2
        e[24] = 0x06;     // RGB 4:4:4, preferred timing includes native format, continuous frequency
        // Chromaticity: sRGB primaries (10-bit fixed point), as published for sRGB displays.
        ReadOnlySpan<byte> chroma = [0xEE, 0x91, 0xA3, 0x54, 0x4C, 0x99, 0x26, 0x0F, 0x50, 0x54];
        chroma.CopyTo(e[25..]);
        // 35..37: no established timings; 38..53: standard timings unused (0x01 0x01).
        for (int i = 38; i < 54; i++) e[i] = 0x01;
        WriteDetailedTiming(width, height, e.Slice(54, 18));
        WriteName(name, e.Slice(72, 18));
        // Two dummy descriptors (tag 0x10).
        e[90 + 3] = 0x10;
        e[108 + 3] = 0x10;
        e[126] = 0;       // no extension blocks
        byte sum = 0;
        for (int i = 0; i < 127; i++) sum += e[i];
        e[127] = (byte)(256 - sum);
    }

    private static void WriteDetailedTiming(int w, int h, Span<byte> d)
    {
        const int hBlank = 160, hFront = 48, hSync = 32, vBlank = 45, vFront = 3, vSync = 5;
        long clock10kHz = ((long)(w + hBlank) * (h + vBlank) * 60 + 9999) / 10000;
        if (clock10kHz > ushort.MaxValue) clock10kHz = ushort.MaxValue;
        d[0] = (byte)clock10kHz;
        d[1] = (byte)(clock10kHz >> 8);
        d[2] = (byte)w;
        d[3] = hBlank & 0xFF;
        d[4] = (byte)(((w >> 8) & 0xF) << 4 | ((hBlank >> 8) & 0xF));
        d[5] = (byte)h;
        d[6] = vBlank & 0xFF;
        d[7] = (byte)(((h >> 8) & 0xF) << 4 | ((vBlank >> 8) & 0xF));
        d[8] = hFront;
        d[9] = hSync;
        d[10] = (vFront & 0xF) << 4 | (vSync & 0xF);
        d[11] = 0;
        d[17] = 0x1E;     // digital separate sync, both polarities positive
    }

    private static void WriteName(string name, Span<byte> d)
    {
        d[3] = 0xFC;      // display product name
        Span<byte> text = d[5..];
        text.Fill(0x20);
        int n = 0;
        foreach (char c in name)
        {
            if (n == 13) break;
            text[n++] = c is >= ' ' and <= '~' ? (byte)c : (byte)'?';
        }
        if (n < 13) text[n] = 0x0A;
    }
}
