namespace XenShare.Tests.Rings;

/// <summary>Stands in for an event channel: a pending bit that a notify sets and a wait clears (notifies
/// while pending merge, as Xen's do).</summary>
internal sealed class TestEventChannel : IDisposable
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);
    private readonly AutoResetEvent _pending = new(false);
    private int _notifications;

    public int Notifications => Volatile.Read(ref _notifications);

    public void Notify()
    {
        Interlocked.Increment(ref _notifications);
        _pending.Set();
    }

    /// <summary>Waits for a notification; a lost wake-up shows as this timeout.</summary>
    public void Wait(string who)
    {
        if (!_pending.WaitOne(Generous)) throw new TimeoutException(who + " waited " + Generous + " for an event that never came (lost wake-up)");
    }

    public void Dispose() => _pending.Dispose();
}
