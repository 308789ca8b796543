using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>ioctl(2) with a pointer argument. glibc: <c>int ioctl(int, unsigned long, ...)</c>, so
        /// the request is pointer-sized (nuint, zero-extended from the 32-bit ioctl number).</summary>
        [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
        internal static unsafe partial int Ioctl(int fd, nuint request, void* arg);
    }
}
