using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>MFD_CLOEXEC.</summary>
        internal const uint MFD_CLOEXEC = 0x0001;

        /// <summary>memfd_create(2) (glibc 2.27+): an anonymous, shared, mmap-able file. Used by tests and
        /// by anything that needs a page-backed fd without a device.</summary>
        [LibraryImport("libc", EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int MemfdCreate(string name, uint flags);

        /// <summary>ftruncate(2); <c>off_t</c> is 64-bit on both 64-bit Linux ABIs.</summary>
        [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
        internal static partial int Ftruncate(int fd, long length);
    }
}
