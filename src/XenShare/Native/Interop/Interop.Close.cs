using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>close(2). Never retried on EINTR: Linux releases the fd even then, and a retry could
        /// close an fd another thread has just been given.</summary>
        [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
        internal static partial int Close(int fd);
    }
}
