namespace XenShare.Rings;

/// <summary>
/// The peer broke the ring protocol (spec RG04): a producer index more than a ring's size ahead of the
/// consumer or behind it, responses to requests that were never pushed, or a response id that was never
/// issued. The ring that detected it is faulted from then on (every later call throws again) and never
/// reads or writes outside its memory; the caller should close the device.
/// </summary>
public sealed class RingProtocolException : Exception
{
    /// <summary>A protocol error with a default message.</summary>
    public RingProtocolException() : base("the peer broke the shared ring protocol") { }

    /// <summary>A protocol error with <paramref name="message"/>.</summary>
    /// <param name="message">What the peer did.</param>
    public RingProtocolException(string message) : base(message) { }

    /// <summary>A protocol error with <paramref name="message"/> and its cause.</summary>
    /// <param name="message">What the peer did.</param>
    /// <param name="innerException">The cause.</param>
    public RingProtocolException(string message, Exception innerException) : base(message, innerException) { }
}
