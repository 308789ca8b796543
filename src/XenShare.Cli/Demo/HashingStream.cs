using System.IO.Hashing;

namespace XenShare.Cli.Demo;

/// <summary>
/// A write-only stream that hashes everything written through it (XXH3, 64 bits) and passes it on to an inner stream,
/// or to nowhere: the demo hashes each PNG file as it writes it, and the comparison pass encodes the same frames into a
/// hash only, so the two modes' PNG files can be compared byte for byte without writing the second set.
/// </summary>
internal sealed class HashingStream : Stream
{
    private readonly Stream? _inner;
    private readonly XxHash3 _hash = new();
    private long _length;

    /// <summary>Hashes what is written and passes it on to <paramref name="inner"/> (left open), or discards it when
    /// null.</summary>
    /// <param name="inner">Where the bytes go, or null.</param>
    public HashingStream(Stream? inner = null)
    {
        _inner = inner;
    }

    /// <summary>The hash of the bytes written so far.</summary>
    public ulong Hash => _hash.GetCurrentHashAsUInt64();

    /// <inheritdoc/>
    public override bool CanRead => false;

    /// <inheritdoc/>
    public override bool CanSeek => false;

    /// <inheritdoc/>
    public override bool CanWrite => true;

    /// <summary>Bytes written so far.</summary>
    public override long Length => _length;

    /// <summary>Bytes written so far (setting it is not supported).</summary>
    public override long Position
    {
        get => _length;
        set => throw new NotSupportedException();
    }

    /// <inheritdoc/>
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _hash.Append(buffer);
        _length += buffer.Length;
        _inner?.Write(buffer);
    }

    /// <inheritdoc/>
    public override void Write(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        Write(buffer.AsSpan(offset, count));
    }

    /// <inheritdoc/>
    public override void WriteByte(byte value) => Write([value]);

    /// <inheritdoc/>
    public override void Flush() => _inner?.Flush();

    /// <inheritdoc/>
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    /// <inheritdoc/>
    public override void SetLength(long value) => throw new NotSupportedException();
}
