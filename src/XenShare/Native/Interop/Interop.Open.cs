using System.Runtime.InteropServices;

namespace XenShare.Native;

internal static partial class Interop
{
    internal static partial class Libc
    {
        /// <summary>
        /// open(2). glibc declares it variadic (<c>int open(const char *, int, ...)</c>); on the Linux
        /// x86-64 and arm64 ABIs an int passed as a variadic argument travels exactly like a fixed one, so
        /// the mode is always passed (it only matters with O_CREAT / O_TMPFILE).
        /// </summary>
        [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
        internal static partial int Open(string path, int flags, int mode);
    }
}
