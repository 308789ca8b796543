namespace XenShare.Displif;

/// <summary>What <see cref="DisplifBackend.ConnectionChanged"/> reports.</summary>
public enum DisplifConnectionChange
{
    /// <summary>The backend wrote its xenbus state.</summary>
    StateSwitched,

    /// <summary>The backend mapped and bound every connector and serves the rings.</summary>
    Connected,

    /// <summary>A connection ended and everything it held was released.</summary>
    Disconnected,

    /// <summary>A ring thread met a protocol error (RG04) or a broken channel: the backend tears the
    /// connection down and switches to Closing.</summary>
    Faulted,

    /// <summary>The sink threw; the request was answered with an error.</summary>
    SinkFailed,
}
