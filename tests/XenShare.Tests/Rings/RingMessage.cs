using System.Runtime.InteropServices;

namespace XenShare.Tests.Rings;

/// <summary>A test request/response: a sequence number and a payload derived from it.</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct RingMessage
{
    public uint Seq;
    public uint Kind;
    public ulong Payload;

    public static RingMessage Request(uint seq) => new() { Seq = seq, Kind = 1, Payload = seq * 0x9E3779B97F4A7C15UL };

    public static RingMessage ResponseTo(RingMessage request) => new() { Seq = request.Seq, Kind = 2, Payload = ~request.Payload };

    public readonly bool IsResponseTo(uint seq) => Seq == seq && Kind == 2 && Payload == ~(seq * 0x9E3779B97F4A7C15UL);
}
