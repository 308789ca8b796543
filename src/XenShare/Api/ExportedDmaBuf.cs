using XenShare.Abi;

namespace XenShare.Api;

/// <summary>
/// A dma-buf exported from foreign grants by gntdev. Disposing closes this process's fd; the buffer is
/// released when every other holder (dup'ed fds, importers) has let go too, and
/// <see cref="WaitForRelease"/> / <see cref="WaitForReleaseAsync"/> tell when that happened.
/// </summary>
public sealed class ExportedDmaBuf : IDisposable, IAsyncDisposable
{
    private readonly GrantDevice _device;
    private int _open = 1;

    internal ExportedDmaBuf(GrantDevice device, int fd, long size)
    {
        _device = device;
        Fd = fd;
        Size = size;
    }

    /// <summary>The dma-buf fd (and the key for waiting, valid even after the fd is closed).</summary>
    public int Fd { get; }

    /// <summary>Size in bytes.</summary>
    public long Size { get; }

    /// <summary>Whether this handle still owns its fd.</summary>
    public bool IsOpen => Volatile.Read(ref _open) != 0;

    /// <summary>Closes the fd (the wait key stays usable).</summary>
    public void Close()
    {
        if (Interlocked.Exchange(ref _open, 0) != 0) _device.Process.Close(Fd);
    }

    /// <summary>Blocks until the buffer is released or the timeout passes. Returns true when released
    /// (ENOENT, "already gone", counts as released: LG02) and false on ETIMEDOUT.</summary>
    public bool WaitForRelease(TimeSpan timeout)
    {
        return ToReleased(_device.WaitReleasedRaw(Fd, ToMs(timeout)));
    }

    /// <summary>LG02: 0 and ENOENT (already gone) mean released, ETIMEDOUT not yet; anything else throws.</summary>
    private static bool ToReleased(int rc)
    {
        if (rc == 0 || rc == -Errno.ENOENT) return true;
        if (rc == -Errno.ETIMEDOUT) return false;
        throw ErrnoMapper.ToException(rc, "IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED");
    }

    /// <summary>Waits asynchronously for the release. Cancellation ends the caller's wait at once and
    /// never touches the buffer (EW06). Returns true when released, false on timeout. On a process with
    /// <see cref="IAsyncGuestProcess"/> (the emulator) no thread is blocked; otherwise the uninterruptible
    /// ioctl runs on a thread of its own.</summary>
    public Task<bool> WaitForReleaseAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<bool>(cancellationToken);
        uint ms = ToMs(timeout);
        if (_device.Process is IAsyncGuestProcess async)
        {
            var arg = IoctlArg.ToArray(new ioctl_gntdev_dmabuf_exp_wait_released { fd = (uint)Fd, wait_to_ms = ms });
            var started = async.IoctlAsync(_device.Fd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, arg, cancellationToken);
            if (started is not null) return Map(started);
        }
        return WaitOnThread(timeout, cancellationToken);

        static async Task<bool> Map(Task<int> ioctl) => ToReleased(await ioctl.ConfigureAwait(false));
    }

    private Task<bool> WaitOnThread(TimeSpan timeout, CancellationToken cancellationToken)
    {
        // Continuations run on the wait thread itself (it has nothing else to do): one wake-up, not two.
        var tcs = new TaskCompletionSource<bool>();
        CancellationTokenRegistration reg = default;
        if (cancellationToken.CanBeCanceled)
            reg = cancellationToken.Register(static s => ((TaskCompletionSource<bool>)s!).TrySetCanceled(), tcs);
        // The ioctl blocks uninterruptibly, as in Linux; it completes the task unless the caller has
        // already stopped waiting.
        var thread = new Thread(() =>
        {
            try { tcs.TrySetResult(WaitForRelease(timeout)); }
            catch (XenShareException e) { tcs.TrySetException(e); }
            finally { reg.Dispose(); }
        })
        { IsBackground = true, Name = "xenshare-wait-released" };
        thread.Start();
        return tcs.Task;
    }

    private static uint ToMs(TimeSpan t)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(t, TimeSpan.Zero);
        double ms = Math.Ceiling(t.TotalMilliseconds);
        return ms >= uint.MaxValue ? uint.MaxValue : (uint)ms;
    }

    /// <summary>Closes the fd.</summary>
    public void Dispose() => Close();

    /// <summary>Closes the fd.</summary>
    public ValueTask DisposeAsync()
    {
        Close();
        return ValueTask.CompletedTask;
    }
}
