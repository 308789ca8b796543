namespace XenShare.Emulation.Kernel;

/// <summary>Finishes an asynchronous syscall: runs the bookkeeping (file put, in-flight count) once the
/// driver's task completes, whatever its outcome. (Separate from <see cref="GuestProcess"/>, whose unsafe
/// context cannot hold an async method.)</summary>
internal static class AsyncSyscall
{
    public static async Task<int> Complete(Task<int> inner, Action done)
    {
        try { return await inner.ConfigureAwait(false); }
        finally { done(); }
    }
}
