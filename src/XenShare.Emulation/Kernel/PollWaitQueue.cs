namespace XenShare.Emulation.Kernel;

/// <summary>One wait queue per kernel for poll(): files call <see cref="Wake"/> after their readiness may
/// have changed (never while holding their own lock); pollers sleep until the generation moves.
/// Lock: the queue object itself, a leaf.</summary>
internal sealed class PollWaitQueue
{
    private long _generation;

    public long Generation { get { lock (this) return _generation; } }

    public void Wake()
    {
        lock (this)
        {
            _generation++;
            Monitor.PulseAll(this);
        }
    }

    /// <summary>Waits until the generation differs from <paramref name="seen"/> or the timeout passes
    /// (timeout &lt; 0 waits forever). Returns false on timeout.</summary>
    public bool WaitChanged(long seen, int timeoutMs)
    {
        long deadline = timeoutMs < 0 ? long.MaxValue : Environment.TickCount64 + timeoutMs;
        lock (this)
        {
            while (_generation == seen)
            {
                long left = deadline == long.MaxValue ? -1 : deadline - Environment.TickCount64;
                if (deadline != long.MaxValue && left <= 0) return false;
                Monitor.Wait(this, left < 0 ? Timeout.Infinite : (int)Math.Min(left, int.MaxValue));
            }
            return true;
        }
    }
}
