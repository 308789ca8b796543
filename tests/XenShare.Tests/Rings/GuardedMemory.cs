using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Native;

namespace XenShare.Tests.Rings;

/// <summary>
/// Pages of read-write memory between two PROT_NONE guard pages: a ring that read or wrote a byte outside
/// its memory would crash the test host instead of passing quietly (RG04: never out of bounds).
/// </summary>
internal sealed unsafe class GuardedMemory : IDisposable
{
    private readonly byte* _reservation;
    private readonly nuint _reservationLength;

    public GuardedMemory(int pages)
    {
        int page = Environment.SystemPageSize;
        Length = pages * page;
        _reservationLength = (nuint)((pages + 2) * page);
        _reservation = (byte*)Interop.Libc.Mmap(null, _reservationLength, Posix.PROT_NONE, Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS, -1, 0);
        if (_reservation == Interop.Libc.MAP_FAILED) throw new InvalidOperationException("mmap guard: " + Marshal.GetLastPInvokeError());
        void* inner = Interop.Libc.Mmap(_reservation + page, (nuint)Length, Posix.PROT_READ | Posix.PROT_WRITE,
            Posix.MAP_PRIVATE | Posix.MAP_ANONYMOUS | Posix.MAP_FIXED, -1, 0);
        if (inner == Interop.Libc.MAP_FAILED) throw new InvalidOperationException("mmap inner: " + Marshal.GetLastPInvokeError());
        Address = (long)inner;
    }

    public long Address { get; }

    public int Length { get; }

    public Span<byte> Span => new((void*)Address, Length);

    public ref uint U32(int offset) => ref *(uint*)(Address + offset);

    public void Dispose() => Interop.Libc.Munmap(_reservation, _reservationLength);
}
