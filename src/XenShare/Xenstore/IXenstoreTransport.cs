namespace XenShare.Xenstore;

/// <summary>A byte stream to a xenstore daemon. The client owns the framing and the request bookkeeping
/// (XS01); a transport only moves bytes, so the Unix socket and the xenbus device share all the parsing.
/// </summary>
internal interface IXenstoreTransport : IDisposable
{
    /// <summary>True when <see cref="ReceiveAsync"/> blocks the calling thread (the xenbus device behind
    /// <see cref="IGuestProcess.Read"/>): the client then runs its reader on a dedicated thread instead
    /// of the thread pool.</summary>
    bool ReceiveBlocks { get; }

    /// <summary>True when XS_WATCH and XS_UNWATCH must be written with no other request of the connection
    /// awaiting its reply: Linux's <c>/dev/xen/xenbus</c> handles them synchronously inside write(2) while
    /// holding the file's message lock, which its reply thread needs for every other reply of the file, so
    /// an earlier reply still in flight deadlocks the domain's whole xenbus (seen on Linux 6.1; see
    /// docs/conformance.md).</summary>
    bool WatchNeedsQuietConnection { get; }

    /// <summary>Sends one whole message (header and payload). Callers serialise sends, so two messages
    /// never interleave. Throws <see cref="IOException"/> when the transport fails.</summary>
    void Send(ReadOnlySpan<byte> message);

    /// <summary>Reads whatever bytes are available, at least one, waiting until some arrive. The bytes
    /// may hold part of a message or several. Returns 0 when the daemon closed the stream; throws
    /// <see cref="IOException"/> on failure and <see cref="ObjectDisposedException"/> or
    /// <see cref="OperationCanceledException"/> once the transport is disposed.</summary>
    ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken);
}
