using XenShare.Abi;
using XenShare.Api;

namespace XenShare.Xenstore;

/// <summary>The xenstore daemon answered a request with XS_ERROR (XS02). <see cref="XenShareException.Errno"/>
/// is the errno named by the daemon's error string (<see cref="XsWire.ErrnoOf"/>), for example
/// <see cref="Errno.ENOENT"/> for a missing node or <see cref="Errno.EAGAIN"/> for a transaction that
/// has to be retried.</summary>
public class XenstoreException : XenShareException
{
    /// <summary>Creates an exception for an error reply.</summary>
    /// <param name="errno">The errno (positive).</param>
    /// <param name="operation">The request type ("XS_READ").</param>
    /// <param name="path">The path the request was about, or null.</param>
    public XenstoreException(int errno, string operation, string? path)
        : base(errno, operation)
    {
        Path = path;
    }

    /// <summary>Creates an exception without details.</summary>
    public XenstoreException() { }

    /// <summary>Creates an exception with a message.</summary>
    public XenstoreException(string message) : base(message) { }

    /// <summary>Creates an exception with a message and an inner exception.</summary>
    public XenstoreException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The path the failed request was about; null for requests without one (transactions).</summary>
    public string? Path { get; }

    /// <inheritdoc />
    public override string Message => Path is null ? base.Message : $"{base.Message} (path {Path})";
}
