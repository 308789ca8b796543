using XenShare.Xenbus;

namespace XenShare.Displif;

/// <summary>A change of a <see cref="DisplifBackend"/>'s connection
/// (<see cref="DisplifBackend.ConnectionChanged"/>).</summary>
public sealed class DisplifConnectionEventArgs : EventArgs
{
    /// <summary>Creates the arguments.</summary>
    /// <param name="kind">What happened.</param>
    /// <param name="state">The state written, for <see cref="DisplifConnectionChange.StateSwitched"/>.</param>
    /// <param name="reason">Why the connection ended, for <see cref="DisplifConnectionChange.Disconnected"/>.</param>
    /// <param name="error">The protocol error or sink failure, for <see cref="DisplifConnectionChange.Faulted"/>
    /// and <see cref="DisplifConnectionChange.SinkFailed"/>.</param>
    /// <param name="connector">The connector concerned, or -1.</param>
    public DisplifConnectionEventArgs(DisplifConnectionChange kind, XenbusState state = XenbusState.Unknown,
        XenbusDisconnectReason? reason = null, Exception? error = null, int connector = -1)
    {
        Kind = kind;
        State = state;
        Reason = reason;
        Error = error;
        Connector = connector;
    }

    /// <summary>What happened.</summary>
    public DisplifConnectionChange Kind { get; }

    /// <summary>The backend state written (<see cref="DisplifConnectionChange.StateSwitched"/>).</summary>
    public XenbusState State { get; }

    /// <summary>Why the connection ended (<see cref="DisplifConnectionChange.Disconnected"/>).</summary>
    public XenbusDisconnectReason? Reason { get; }

    /// <summary>The error (<see cref="DisplifConnectionChange.Faulted"/>, <see cref="DisplifConnectionChange.SinkFailed"/>).</summary>
    public Exception? Error { get; }

    /// <summary>The connector concerned, or -1.</summary>
    public int Connector { get; }
}
