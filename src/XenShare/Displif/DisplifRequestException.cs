using XenShare.Abi;

namespace XenShare.Displif;

/// <summary>The backend answered a displif request with an error status (a negative errno).</summary>
public sealed class DisplifRequestException : Exception
{
    /// <summary>Creates the exception for a response.</summary>
    /// <param name="operation">The XENDISPL_OP_* code.</param>
    /// <param name="status">The status answered (negative errno).</param>
    public DisplifRequestException(byte operation, int status)
        : base($"displif operation 0x{operation:x2} failed: {Errno.Name(-status)} ({status})")
    {
        Operation = operation;
        Status = status;
    }

    /// <summary>Creates an exception with a message.</summary>
    public DisplifRequestException() : base("a displif request failed") { }

    /// <summary>Creates an exception with a message.</summary>
    /// <param name="message">The message.</param>
    public DisplifRequestException(string message) : base(message) { }

    /// <summary>Creates an exception with a message and a cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public DisplifRequestException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The XENDISPL_OP_* code.</summary>
    public byte Operation { get; }

    /// <summary>The status answered: a negative errno.</summary>
    public int Status { get; }
}
