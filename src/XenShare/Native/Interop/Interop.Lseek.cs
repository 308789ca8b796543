using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>lseek(2); <c>off_t</c> is 64-bit on both 64-bit Linux ABIs.</summary>
        [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
        internal static partial long Lseek(int fd, long offset, int whence);
    }
}
