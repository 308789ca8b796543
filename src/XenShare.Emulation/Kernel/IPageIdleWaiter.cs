namespace XenShare.Emulation.Kernel;

/// <summary>Waits until the pages it registered with <see cref="PageRefs.WhenIdle"/> carry no extra
/// reference (gntdev's asynchronous unmap).</summary>
internal interface IPageIdleWaiter
{
    /// <summary>Called once, by the put that dropped the last extra reference, with no lock of
    /// <see cref="PageRefs"/> held.</summary>
    void OnPagesIdle();
}
