namespace XenShare.Xenbus;

/// <summary>Why <see cref="XenbusBackendDevice.RunAsync"/> called the handler's
/// <see cref="IXenbusBackendHandler.DisconnectAsync"/> (spec XB02, XB03).</summary>
public enum XenbusDisconnectReason
{
    /// <summary>The frontend left the connected states: it went to Closing or Closed, or back to
    /// Unknown, Initialising or InitWait (a frontend driver that restarted).</summary>
    PeerClosed,

    /// <summary>The frontend's <c>state</c> node (with its device directory) is gone.</summary>
    PeerVanished,

    /// <summary>The frontend's domain died: <c>@releaseDomain</c> fired and xenstore no longer knows
    /// the domain.</summary>
    PeerDomainDied,

    /// <summary>The backend's own device directory was removed (the toolstack removed the device).</summary>
    DeviceRemoved,

    /// <summary>The handler's <see cref="IXenbusBackendHandler.ConnectAsync"/> failed (for example on
    /// rings or event channels a frontend published wrongly); the disconnect releases whatever it had
    /// set up before it failed.</summary>
    ConnectFailed,

    /// <summary>The run ended while connected: cancellation, disposal of the device, or a failing
    /// xenstore connection.</summary>
    Stopped,
}
