namespace XenShare.Xenbus;

/// <summary>
/// The protocol side of a PV backend that <see cref="XenbusBackendDevice.RunAsync"/> drives through the
/// xenbus handshake (spec XB02): what to publish before InitWait, how to connect to a frontend that
/// published its rings, and how to let go of it. The generic walk (states, watches, frontend restarts and
/// deaths) is the device's; everything protocol-specific (ring layouts, event channels, mappings) is the
/// handler's.
/// </summary>
/// <remarks>
/// The device calls the members one at a time, never concurrently, from the task that runs
/// <see cref="XenbusBackendDevice.RunAsync"/>. <see cref="DisconnectAsync"/> runs exactly once after every
/// <see cref="ConnectAsync"/> call, whether that call completed, failed or was cancelled, so the handler
/// releases in one place whatever a connection set up.
/// </remarks>
public interface IXenbusBackendHandler
{
    /// <summary>Publishes what the frontend needs before the backend switches to InitWait (features,
    /// limits), once per run, in the backend directory (<see cref="XenbusBackendDevice.BackendPath"/>). The
    /// default publishes nothing. An exception ends the run.</summary>
    /// <param name="device">The device being run.</param>
    /// <param name="cancellationToken">Cancelled when the run is cancelled or the device disposed.</param>
    Task PublishAsync(XenbusBackendDevice device, CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Connects to the frontend, which has reached Initialised (or Connected): reads its rings and
    /// event channels from <see cref="XenbusBackendDevice.FrontendPath"/>, maps and binds them. The device
    /// switches to Connected when this completes. When it throws, the device calls
    /// <see cref="DisconnectAsync"/> with <see cref="XenbusDisconnectReason.ConnectFailed"/>, switches to
    /// Closing and waits for the frontend to close before it offers InitWait again; the run goes on.</summary>
    /// <param name="device">The device being run.</param>
    /// <param name="cancellationToken">Cancelled when the run is cancelled or the device disposed.</param>
    Task ConnectAsync(XenbusBackendDevice device, CancellationToken cancellationToken);

    /// <summary>Releases everything the last <see cref="ConnectAsync"/> set up (unmap, unbind, free every
    /// buffer), even partially. It is not cancellable: the device waits for it. An exception ends the
    /// run with that exception.</summary>
    /// <param name="device">The device being run.</param>
    /// <param name="reason">What ended the connection.</param>
    Task DisconnectAsync(XenbusBackendDevice device, XenbusDisconnectReason reason);

    /// <summary>Called after the device wrote <paramref name="state"/> to its <c>state</c> node (for logs and
    /// tests); the default does nothing. It must not block.</summary>
    /// <param name="device">The device being run.</param>
    /// <param name="state">The state just written.</param>
    void OnStateSwitched(XenbusBackendDevice device, XenbusState state) { }
}
