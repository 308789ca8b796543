using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>The value mmap(2) returns on failure: <c>(void *)-1</c>.</summary>
        internal static readonly unsafe void* MAP_FAILED = (void*)-1;

        /// <summary>mmap(2); <c>off_t</c> is 64-bit on both 64-bit Linux ABIs.</summary>
        [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
        internal static unsafe partial void* Mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

        /// <summary>munmap(2).</summary>
        [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
        internal static unsafe partial int Munmap(void* addr, nuint length);
    }
}
