using System.Runtime.InteropServices;

namespace XenShare;

/// <summary><c>struct pollfd</c> (8 bytes).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct PollFd
{
    /// <summary>The file descriptor.</summary>
    public int Fd;
    /// <summary>Requested events (POLLIN, ...).</summary>
    public short Events;
    /// <summary>Returned events.</summary>
    public short REvents;
}
