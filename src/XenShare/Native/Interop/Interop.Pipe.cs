using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>pipe2(2): <paramref name="fds"/> points at two ints (read end, write end).</summary>
        [LibraryImport("libc", EntryPoint = "pipe2", SetLastError = true)]
        internal static unsafe partial int Pipe2(int* fds, int flags);
    }
}
