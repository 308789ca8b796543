namespace XenShare;

/// <summary>
/// An optional capability of a guest process: ioctls that block in the kernel (the dma-buf
/// EXP_WAIT_RELEASED) can complete asynchronously, without a thread blocked per wait. The typed API uses
/// it when present and otherwise runs the blocking ioctl on a thread of its own.
/// </summary>
public interface IAsyncGuestProcess : IGuestProcess
{
    /// <summary>Starts an input-only ioctl asynchronously. Returns null when <paramref name="request"/> has
    /// no asynchronous form (the caller then uses <see cref="IGuestProcess.Ioctl"/>); otherwise a task
    /// with the ioctl's result (&gt;= 0 or -errno). Cancellation ends the caller's wait only.</summary>
    Task<int>? IoctlAsync(int fd, uint request, ReadOnlyMemory<byte> arg, CancellationToken cancellationToken);
}
