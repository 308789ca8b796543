using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>poll(2); <c>nfds_t</c> is <c>unsigned long</c>.</summary>
        [LibraryImport("libc", EntryPoint = "poll", SetLastError = true)]
        internal static unsafe partial int Poll(PollFd* fds, nuint nfds, int timeoutMs);
    }
}
