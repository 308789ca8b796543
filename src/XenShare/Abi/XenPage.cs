namespace XenShare.Abi;

// The Xen page (XEN_PAGE_SIZE / XEN_PAGE_SHIFT of <xen/page.h>): the unit of grants, frames, gntdev and
// gntalloc file offsets and DMA mappings. The one place the number is written (see docs/design.md).

/// <summary>
/// The Xen page: <see cref="Size"/> and <see cref="Shift"/>, and the address/frame arithmetic built on them.
/// Grants, machine and guest frames, gntdev/gntalloc mmap offsets and DMA addresses are all counted in it.
/// </summary>
public static class XenPage
{
    /// <summary>XEN_PAGE_SIZE: bytes in a page.</summary>
    public const int Size = 4096;

    /// <summary>XEN_PAGE_SHIFT: <c>1 &lt;&lt; Shift == Size</c>.</summary>
    public const int Shift = 12;

    /// <summary>The offset-within-page bits, <c>Size - 1</c> (the complement of Linux's <c>XEN_PAGE_MASK</c>).</summary>
    public const int Mask = Size - 1;

    /// <summary>The frame number of the page that holds <paramref name="address"/>.</summary>
    /// <param name="address">A byte address (guest-physical, machine or DMA).</param>
    public static ulong FrameOf(ulong address) => address >> Shift;

    /// <summary>The address of the first byte of frame <paramref name="frame"/>.</summary>
    /// <param name="frame">A frame (page) number.</param>
    public static ulong AddressOf(ulong frame) => frame << Shift;

    /// <summary>The offset of <paramref name="address"/> within its page (0..<see cref="Mask"/>).</summary>
    /// <param name="address">A byte address.</param>
    public static int OffsetOf(ulong address) => (int)(address & Mask);

    /// <summary>The number of pages that cover <paramref name="bytes"/> bytes (rounded up).</summary>
    /// <param name="bytes">A length in bytes, not negative.</param>
    public static int PagesFor(int bytes) => (bytes + Mask) / Size;

    /// <summary>The number of pages that cover <paramref name="bytes"/> bytes (rounded up).</summary>
    /// <param name="bytes">A length in bytes, not negative.</param>
    public static long PagesFor(long bytes) => (bytes + Mask) / Size;

    /// <summary>The number of pages that cover <paramref name="bytes"/> bytes (rounded up).</summary>
    /// <param name="bytes">A length in bytes.</param>
    public static ulong PagesFor(ulong bytes) => (bytes + Mask) >> Shift;

    /// <summary><paramref name="length"/> rounded up to a whole number of pages.</summary>
    /// <param name="length">A length in bytes, not negative.</param>
    public static long RoundUp(long length) => (length + Mask) & ~(long)Mask;

    /// <summary>True when <paramref name="value"/> is a multiple of <see cref="Size"/>.</summary>
    /// <param name="value">An address, offset or length.</param>
    public static bool IsAligned(long value) => (value & Mask) == 0;

    /// <summary>True when <paramref name="value"/> is a multiple of <see cref="Size"/>.</summary>
    /// <param name="value">An address, offset or length.</param>
    public static bool IsAligned(ulong value) => (value & Mask) == 0;
}
