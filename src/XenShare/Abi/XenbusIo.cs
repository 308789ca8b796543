namespace XenShare.Abi;

// Mirror of <xen/io/xenbus.h> (Debian package libxen-dev; one file per header, see docs/design.md).

/// <summary>The values of <c>enum xenbus_state</c> of <c>xen/io/xenbus.h</c>: the <c>state</c> node of a PV
/// device's frontend and backend directories (spec XB02). <see cref="Xenbus.XenbusState"/> is the typed
/// form; AbiHeaderTests compares these with the header.</summary>
public static class XenbusIo
{
    /// <summary>XenbusStateUnknown: no state (also what a missing node reads as).</summary>
    public const int XenbusStateUnknown = 0;
    /// <summary>XenbusStateInitialising.</summary>
    public const int XenbusStateInitialising = 1;
    /// <summary>XenbusStateInitWait: the backend published what the frontend needs and waits for it.</summary>
    public const int XenbusStateInitWait = 2;
    /// <summary>XenbusStateInitialised: the frontend published its rings and event channels.</summary>
    public const int XenbusStateInitialised = 3;
    /// <summary>XenbusStateConnected.</summary>
    public const int XenbusStateConnected = 4;
    /// <summary>XenbusStateClosing: the device is being torn down.</summary>
    public const int XenbusStateClosing = 5;
    /// <summary>XenbusStateClosed.</summary>
    public const int XenbusStateClosed = 6;
    /// <summary>XenbusStateReconfiguring.</summary>
    public const int XenbusStateReconfiguring = 7;
    /// <summary>XenbusStateReconfigured.</summary>
    public const int XenbusStateReconfigured = 8;
}
