using XenShare.Abi;

namespace XenShare.Xenbus;

/// <summary>
/// The state of one end of a PV device (spec XB02; <c>enum xenbus_state</c> of <c>xen/io/xenbus.h</c>, whose
/// values <see cref="XenbusIo"/> mirrors): the decimal number in the <c>state</c> node of the frontend's and
/// the backend's device directory. Each side writes only its own node and watches the other's.
/// </summary>
public enum XenbusState
{
    /// <summary>0: no state. A missing or unreadable <c>state</c> node reads as this too.</summary>
    Unknown = XenbusIo.XenbusStateUnknown,

    /// <summary>1: the side is starting (the toolstack writes it when it creates the device).</summary>
    Initialising = XenbusIo.XenbusStateInitialising,

    /// <summary>2: the backend has published what the frontend needs and waits for the frontend.</summary>
    InitWait = XenbusIo.XenbusStateInitWait,

    /// <summary>3: the frontend has published its rings and event channels.</summary>
    Initialised = XenbusIo.XenbusStateInitialised,

    /// <summary>4: connected; the protocol runs.</summary>
    Connected = XenbusIo.XenbusStateConnected,

    /// <summary>5: the side is tearing the device down.</summary>
    Closing = XenbusIo.XenbusStateClosing,

    /// <summary>6: the side has closed the device.</summary>
    Closed = XenbusIo.XenbusStateClosed,

    /// <summary>7: reconfiguration in progress (not used by this library's walks).</summary>
    Reconfiguring = XenbusIo.XenbusStateReconfiguring,

    /// <summary>8: reconfiguration done (not used by this library's walks).</summary>
    Reconfigured = XenbusIo.XenbusStateReconfigured,
}
