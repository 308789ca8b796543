using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>dup(2).</summary>
        [LibraryImport("libc", EntryPoint = "dup", SetLastError = true)]
        internal static partial int Dup(int fd);
    }
}
