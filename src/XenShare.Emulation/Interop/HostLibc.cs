using System.Runtime.InteropServices;

namespace XenShare.Emulation.Interop;

/// <summary>The few host syscalls the emulator itself needs: machine memory is a memfd, mapped once as
/// the hypervisor's direct map and again, page run by page run, into emulated processes so that guest
/// mappings alias the same machine frames (zero copy, as on real hardware).</summary>
internal static partial class HostLibc
{
    internal const int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2;
    internal const int MAP_SHARED = 1, MAP_PRIVATE = 2, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;
    internal const uint MFD_CLOEXEC = 1;

    [LibraryImport("libc", EntryPoint = "memfd_create", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    internal static partial int MemfdCreate(string name, uint flags);

    [LibraryImport("libc", EntryPoint = "ftruncate", SetLastError = true)]
    internal static partial int Ftruncate(int fd, long length);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    internal static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    internal static unsafe partial void* Mmap(void* addr, nuint length, int prot, int flags, int fd, long offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    internal static unsafe partial int Munmap(void* addr, nuint length);

    internal static unsafe bool MapFailed(void* p) => p == (void*)-1;
}
