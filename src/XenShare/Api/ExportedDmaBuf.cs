using XenShare.Abi;

namespace XenShare.Api;

/// <summary>
/// A dma-buf exported from foreign grants by gntdev. Disposing closes this process's fd; the buffer is
/// released when every other holder (dup'ed fds, importers) has let go too, and
/// <see cref="WaitForRelease"/> / <see cref="WaitForReleaseAsync"/> tell when that happened. A forgotten export's
/// fd is closed by the finalizer of its <see cref="Handle"/>.
/// </summary>
/// <remarks>The waits run on the <see cref="GrantDevice"/> the buffer was exported from: wait before disposing
/// that device; a wait after it throws <see cref="ObjectDisposedException"/> saying so.</remarks>
public sealed class ExportedDmaBuf : IDisposable, IAsyncDisposable
{
    private readonly GrantDevice _device;
    private readonly GuestFdHandle _handle;

    internal ExportedDmaBuf(GrantDevice device, int fd, long size)
    {
        _device = device;
        _handle = new GuestFdHandle(device.Process, fd, nameof(ExportedDmaBuf));
        Fd = fd;
        Size = size;
    }

    /// <summary>The dma-buf fd (and the key for waiting, valid even after the fd is closed).</summary>
    public int Fd { get; }

    /// <summary>The handle that owns the dma-buf fd.</summary>
    public GuestFdHandle Handle => _handle;

    /// <summary>Size in bytes.</summary>
    public long Size { get; }

    /// <summary>Whether this handle still owns its fd.</summary>
    public bool IsOpen => !_handle.IsDisposed;

    /// <summary>Closes the fd (the wait key stays usable).</summary>
    public void Close() => _handle.Dispose();

    /// <summary>Blocks until the buffer is released or the timeout passes. Returns true when released
    /// (ENOENT, "already gone", counts as released: LG02) and false on ETIMEDOUT.
    /// <see cref="Timeout.InfiniteTimeSpan"/> waits until the release (the ioctl's longest wait, u32 ms, again
    /// and again).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative timeout other than infinite.</exception>
    public bool WaitForRelease(TimeSpan timeout)
    {
        uint ms = ToMs(timeout);
        while (true)
        {
            bool released = ToReleased(WaitRaw(ms));
            if (released || timeout != Timeout.InfiniteTimeSpan) return released;
        }
    }

    private int WaitRaw(uint ms)
    {
        try
        {
            return _device.WaitReleasedRaw(Fd, ms);
        }
        catch (ObjectDisposedException e)
        {
            throw DeviceGone(e);
        }
    }

    private static ObjectDisposedException DeviceGone(Exception? inner) => new(
        "the GrantDevice this dma-buf was exported from was disposed: wait for the release before disposing the device",
        inner);

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
    /// ioctl runs on a thread of its own. <see cref="Timeout.InfiniteTimeSpan"/> waits until the release.</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative timeout other than infinite.</exception>
    public Task<bool> WaitForReleaseAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<bool>(cancellationToken);
        uint ms = ToMs(timeout);
        if (_device.Process is IAsyncGuestProcess async)
        {
            var started = Start(async, ms, cancellationToken);
            if (started is not null) return timeout == Timeout.InfiniteTimeSpan ? Forever(async, started, ms, cancellationToken) : Map(started);
        }
        return WaitOnThread(timeout, cancellationToken);

        static async Task<bool> Map(Task<int> ioctl) => ToReleased(await ioctl.ConfigureAwait(false));
    }

    /// <summary>Starts the asynchronous ioctl with a reference on the gntdev fd held until it completes (so a
    /// concurrent dispose of the device cannot close, and reuse, the fd under it).</summary>
    private Task<int>? Start(IAsyncGuestProcess async, uint ms, CancellationToken cancellationToken)
    {
        var device = _device.Handle;
        if (!device.TryAddRef()) throw DeviceGone(null);
        Task<int>? ioctl = null;
        try
        {
            var arg = IoctlArg.ToArray(new ioctl_gntdev_dmabuf_exp_wait_released { fd = (uint)Fd, wait_to_ms = ms });
            ioctl = async.IoctlAsync(device.Number, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_WAIT_RELEASED, arg, cancellationToken);
            return ioctl is null ? null : Release(ioctl, device);
        }
        finally
        {
            if (ioctl is null) device.DangerousRelease();
        }

        static async Task<int> Release(Task<int> ioctl, GuestFdHandle device)
        {
            try
            {
                return await ioctl.ConfigureAwait(false);
            }
            finally
            {
                device.DangerousRelease();
            }
        }
    }

    /// <summary>An infinite asynchronous wait: the ioctl's longest wait, again until the release.</summary>
    private async Task<bool> Forever(IAsyncGuestProcess async, Task<int> first, uint ms, CancellationToken cancellationToken)
    {
        var wait = first;
        while (!ToReleased(await wait.ConfigureAwait(false)))
            wait = Start(async, ms, cancellationToken) ?? Task.FromResult(WaitRaw(ms));
        return true;
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
            catch (ObjectDisposedException e) { tcs.TrySetException(e); }
            finally { reg.Dispose(); }
        })
        { IsBackground = true, Name = "xenshare-wait-released" };
        thread.Start();
        return tcs.Task;
    }

    private static uint ToMs(TimeSpan t)
    {
        if (t == Timeout.InfiniteTimeSpan) return uint.MaxValue;
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
