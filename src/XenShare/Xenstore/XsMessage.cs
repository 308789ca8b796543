using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using XenShare.Abi;

namespace XenShare.Xenstore;

/// <summary>A request being built in a pooled buffer: room for the <see cref="xsd_sockmsg"/> header first,
/// then the payload (XS01). The header is written by <see cref="Finish"/> once the request id is known.
/// </summary>
internal struct XsMessage
{
    private static readonly int HeaderSize = XsWire.HeaderSize;

    private byte[]? _buffer;
    private int _length;

    /// <summary>Starts a message with an empty payload.</summary>
    public static XsMessage Create() =>
        new() { _buffer = ArrayPool<byte>.Shared.Rent(HeaderSize + XsWire.XENSTORE_PAYLOAD_MAX) };

    /// <summary>The payload written so far.</summary>
    public readonly int PayloadLength => _length;

    /// <summary>Appends the UTF-8 bytes of <paramref name="text"/> (no terminator).</summary>
    public void Append(string text)
    {
        int count = Encoding.UTF8.GetByteCount(text);
        Reserve(count);
        _length += Encoding.UTF8.GetBytes(text, Buffer.AsSpan(HeaderSize + _length, count));
    }

    /// <summary>Appends the UTF-8 bytes of <paramref name="text"/> and a NUL.</summary>
    public void AppendZ(string text)
    {
        Append(text);
        AppendNul();
    }

    /// <summary>Appends raw bytes.</summary>
    public void Append(ReadOnlySpan<byte> bytes)
    {
        Reserve(bytes.Length);
        bytes.CopyTo(Buffer.AsSpan(HeaderSize + _length));
        _length += bytes.Length;
    }

    /// <summary>Appends one NUL.</summary>
    public void AppendNul()
    {
        Reserve(1);
        Buffer[HeaderSize + _length++] = 0;
    }

    /// <summary>Writes the header and returns the whole message; valid until <see cref="Release"/>.</summary>
    public readonly ReadOnlySpan<byte> Finish(uint type, uint reqId, uint txId)
    {
        var header = new xsd_sockmsg { type = type, req_id = reqId, tx_id = txId, len = (uint)_length };
        // XS01: the header is the C struct as the daemon reads it (little-endian on every Xen host .NET runs on).
        MemoryMarshal.Write(Buffer.AsSpan(0, HeaderSize), in header);
        return Buffer.AsSpan(0, HeaderSize + _length);
    }

    /// <summary>Returns the buffer to the pool; safe to call twice.</summary>
    public void Release()
    {
        var buffer = _buffer;
        _buffer = null;
        if (buffer is not null) ArrayPool<byte>.Shared.Return(buffer);
    }

    private readonly byte[] Buffer => _buffer ?? throw new ObjectDisposedException(nameof(XsMessage));

    private void Reserve(int count)
    {
        // XS01: no payload may exceed XENSTORE_PAYLOAD_MAX; the daemon would drop the connection.
        if (count > XsWire.XENSTORE_PAYLOAD_MAX - _length)
        {
            Release();
            throw new ArgumentException(
                $"the request payload would exceed XENSTORE_PAYLOAD_MAX ({XsWire.XENSTORE_PAYLOAD_MAX} bytes)");
        }
    }

    /// <summary>Validates a node path before it is sent (XS01): non-empty, no NUL, and within
    /// XENSTORE_ABS_PATH_MAX (absolute, or a special <c>@</c> watch path) or XENSTORE_REL_PATH_MAX
    /// (relative to the connection's home path) UTF-8 bytes.</summary>
    public static void ValidatePath(string path, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(path, parameterName);
        if (path.Length == 0) throw new ArgumentException("a xenstore path must not be empty", parameterName);
        if (path.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException("a xenstore path must not contain NUL", parameterName);
        bool absolute = path[0] is '/' or '@';
        int max = absolute ? XsWire.XENSTORE_ABS_PATH_MAX : XsWire.XENSTORE_REL_PATH_MAX;
        if (Encoding.UTF8.GetByteCount(path) > max)
            throw new ArgumentException(
                $"a {(absolute ? "absolute" : "relative")} xenstore path may have at most {max} bytes", parameterName);
    }

    /// <summary>Validates a watch token: no NUL (it is NUL-terminated on the wire).</summary>
    public static void ValidateToken(string token, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(token, parameterName);
        if (token.Contains('\0', StringComparison.Ordinal))
            throw new ArgumentException("a watch token must not contain NUL", parameterName);
    }

    /// <summary>The name of a message type for messages and exceptions ("XS_READ").</summary>
    public static string NameOf(uint type) => type switch
    {
        XsWire.XS_CONTROL => "XS_CONTROL",
        XsWire.XS_DIRECTORY => "XS_DIRECTORY",
        XsWire.XS_READ => "XS_READ",
        XsWire.XS_GET_PERMS => "XS_GET_PERMS",
        XsWire.XS_WATCH => "XS_WATCH",
        XsWire.XS_UNWATCH => "XS_UNWATCH",
        XsWire.XS_TRANSACTION_START => "XS_TRANSACTION_START",
        XsWire.XS_TRANSACTION_END => "XS_TRANSACTION_END",
        XsWire.XS_INTRODUCE => "XS_INTRODUCE",
        XsWire.XS_RELEASE => "XS_RELEASE",
        XsWire.XS_GET_DOMAIN_PATH => "XS_GET_DOMAIN_PATH",
        XsWire.XS_WRITE => "XS_WRITE",
        XsWire.XS_MKDIR => "XS_MKDIR",
        XsWire.XS_RM => "XS_RM",
        XsWire.XS_SET_PERMS => "XS_SET_PERMS",
        XsWire.XS_WATCH_EVENT => "XS_WATCH_EVENT",
        XsWire.XS_ERROR => "XS_ERROR",
        XsWire.XS_IS_DOMAIN_INTRODUCED => "XS_IS_DOMAIN_INTRODUCED",
        XsWire.XS_RESUME => "XS_RESUME",
        XsWire.XS_SET_TARGET => "XS_SET_TARGET",
        XsWire.XS_RESET_WATCHES => "XS_RESET_WATCHES",
        XsWire.XS_DIRECTORY_PART => "XS_DIRECTORY_PART",
        _ => "XS_" + type.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };

    /// <summary>Splits a payload of NUL-terminated strings (DIRECTORY, GET_PERMS, WATCH_EVENT replies).
    /// A final string without its NUL is kept; the empty string after the last NUL is not.</summary>
    public static List<string> SplitStrings(ReadOnlySpan<byte> payload)
    {
        var result = new List<string>();
        while (!payload.IsEmpty)
        {
            int nul = payload.IndexOf((byte)0);
            if (nul < 0)
            {
                result.Add(Encoding.UTF8.GetString(payload));
                break;
            }
            result.Add(Encoding.UTF8.GetString(payload[..nul]));
            payload = payload[(nul + 1)..];
        }
        return result;
    }

    /// <summary>The string before the first NUL (or the whole payload when there is none).</summary>
    public static string FirstString(ReadOnlySpan<byte> payload)
    {
        int nul = payload.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul < 0 ? payload : payload[..nul]);
    }
}
