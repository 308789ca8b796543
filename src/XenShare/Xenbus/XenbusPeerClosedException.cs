namespace XenShare.Xenbus;

/// <summary>The other end of a PV device closed or vanished while this end waited for it during the
/// xenbus handshake (spec XB02): <see cref="XenbusFrontendDevice.ConnectAsync"/> saw the backend go to
/// Closing or Closed, or its directory disappear.</summary>
public class XenbusPeerClosedException : IOException
{
    /// <summary>Creates an exception for a peer seen in <paramref name="peerState"/>.</summary>
    /// <param name="peerPath">The peer's device directory.</param>
    /// <param name="peerState">The peer's state; <see cref="XenbusState.Unknown"/> when its node is gone.</param>
    /// <param name="vanished">Whether the peer's <c>state</c> node is gone.</param>
    public XenbusPeerClosedException(string peerPath, XenbusState peerState, bool vanished)
        : base(vanished
            ? $"the xenbus peer {peerPath} vanished"
            : $"the xenbus peer {peerPath} went to {peerState} ({(int)peerState})")
    {
        PeerPath = peerPath;
        PeerState = peerState;
        Vanished = vanished;
    }

    /// <summary>Creates an exception without details.</summary>
    public XenbusPeerClosedException() { }

    /// <summary>Creates an exception with a message.</summary>
    public XenbusPeerClosedException(string message) : base(message) { }

    /// <summary>Creates an exception with a message and an inner exception.</summary>
    public XenbusPeerClosedException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The peer's device directory, or null.</summary>
    public string? PeerPath { get; }

    /// <summary>The state the peer was seen in.</summary>
    public XenbusState PeerState { get; }

    /// <summary>Whether the peer's <c>state</c> node was gone.</summary>
    public bool Vanished { get; }
}
