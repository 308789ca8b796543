namespace XenShare.Cli.Demo;

/// <summary>What the frontend publishes for the backend (in Xen: xenstore keys under the frontend's device
/// node): the ring's grant ref, the event channel port, and each framebuffer's grant refs.</summary>
/// <param name="RingRef">Grant ref of the ring page.</param>
/// <param name="Port">The frontend's unbound event channel port.</param>
/// <param name="BufferRefs">Grant refs of each framebuffer, in page order.</param>
internal sealed record DemoFrontendInfo(GrantRef RingRef, EventPort Port, GrantRef[][] BufferRefs);

/// <summary>
/// The demo's stand-in for xenstore and the xenbus state machine: the frontend publishes
/// <see cref="DemoFrontendInfo"/> (Initialised), the backend says Connected after mapping everything and Closed
/// after unmapping everything, so the frontend ends grant access only once the backend let go.
/// </summary>
internal sealed class DemoXenbus : IDisposable
{
    private readonly TaskCompletionSource<DemoFrontendInfo> _frontend = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Set when the backend is connected (ring mapped, port bound, buffers imported).</summary>
    public ManualResetEventSlim BackendConnected { get; } = new(false);

    /// <summary>Set when the backend has released everything of the frontend's (or never mapped anything).</summary>
    public ManualResetEventSlim BackendClosed { get; } = new(false);

    /// <summary>Frontend: publishes its details (state Initialised).</summary>
    public void PublishFrontend(DemoFrontendInfo info) => _frontend.TrySetResult(info);

    /// <summary>Frontend: it failed before publishing; the backend stops waiting.</summary>
    public void FrontendFailed() => _frontend.TrySetCanceled();

    /// <summary>Backend: waits for the frontend's details.</summary>
    public DemoFrontendInfo WaitFrontend(CancellationToken cancellationToken)
    {
        // An OperationCanceledException both when stopped and when the frontend failed before publishing.
        return _frontend.Task.WaitAsync(cancellationToken).GetAwaiter().GetResult();
    }

    /// <summary>Disposes the events.</summary>
    public void Dispose()
    {
        BackendConnected.Dispose();
        BackendClosed.Dispose();
    }
}
