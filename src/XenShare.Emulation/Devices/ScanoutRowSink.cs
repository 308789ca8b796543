namespace XenShare.Emulation.Devices;

/// <summary>Receives one scanned-out row of a frame from a <see cref="ScanoutEngine"/>, top to bottom.</summary>
/// <param name="y">Row index, 0 = top.</param>
/// <param name="row">The row's pixels (<c>width * 4</c> bytes). On the zero-copy path this is a view of the
/// framebuffer itself, valid only during the call.</param>
public delegate void ScanoutRowSink(int y, ReadOnlySpan<byte> row);
