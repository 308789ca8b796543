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

    /// <summary>True when a request may be written only after every earlier request of the connection has
    /// its reply read; the client then queues requests and writes them one at a time, in order. Linux's
    /// <c>/dev/xen/xenbus</c> needs it twice over (Linux 6.1, see docs/conformance.md): write(2) queues a
    /// request whose payload still lies in the open file's one message buffer, which the next write(2)
    /// overwrites before the kernel's xenbus thread may have sent it (the likely cause of one real-Xen run
    /// where a read of one device's node was answered with the other device's value); and XS_WATCH / XS_UNWATCH are handled inside write(2) under
    /// the file's message lock that the reply thread needs for the file's other replies, so a reply still
    /// in flight deadlocks the domain's xenbus. libxenstore has one request in flight per handle for the
    /// same reason.</summary>
    bool OneRequestInFlight { get; }

    /// <summary>The largest request payload the transport carries: XENSTORE_PAYLOAD_MAX on the socket; on
    /// Linux's <c>/dev/xen/xenbus</c> header and payload share one XENSTORE_PAYLOAD_MAX buffer, so 16 bytes
    /// less (a longer request is E2BIG there).</summary>
    int MaxRequestPayload { get; }

    /// <summary>Sends one whole message (header and payload). Callers serialise sends, so two messages
    /// never interleave. Throws <see cref="IOException"/> when the transport fails.</summary>
    void Send(ReadOnlySpan<byte> message);

    /// <summary>Reads whatever bytes are available, at least one, waiting until some arrive. The bytes
    /// may hold part of a message or several. Returns 0 when the daemon closed the stream; throws
    /// <see cref="IOException"/> on failure and <see cref="ObjectDisposedException"/> or
    /// <see cref="OperationCanceledException"/> once the transport is disposed.</summary>
    ValueTask<int> ReceiveAsync(Memory<byte> buffer, CancellationToken cancellationToken);
}
