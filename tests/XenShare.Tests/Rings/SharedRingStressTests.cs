using System.Runtime.InteropServices;
using XenShare.Rings;

namespace XenShare.Tests.Rings;

/// <summary>RG03 under concurrency: a front end and a back end on two threads over one page of native
/// memory, an event per direction; no sleeps - a lost wake-up would show as a wait that times out.</summary>
public sealed class SharedRingStressTests
{
    [Theory]
    [InlineData(100_000, 1, 0u)]            // strict ping-pong: every message waits for its answer
    [InlineData(200_000, 32, 0xFFFF0000u)]  // pipelined, the whole ring in flight, indexes wrapping
    [InlineData(100_000, 5, 0xFFFFFFF0u)]
    public async Task RG03_two_threads_ping_pong_loses_no_wake_up(int messages, int window, uint start)
    {
        long page = AllocPage();
        try
        {
            await Run(page, messages, window, start);
        }
        finally
        {
            FreePage(page);
        }
    }

    private static unsafe long AllocPage()
    {
        void* page = NativeMemory.AlignedAlloc(4096, 4096);
        new Span<byte>(page, 4096).Clear();
        return (long)page;
    }

    private static unsafe void FreePage(long page) => NativeMemory.AlignedFree((void*)page);

    private static async Task Run(long page, int messages, int window, uint start)
    {
        // The shared header as a front end that attached at `start` leaves it (RG02: start near 2^32).
        Span<byte> header = GuestMemory.AsSpan(page, SharedRingLayout.HeaderSize);
        SharedRingLayout.Initialize(header);
        MemoryMarshal.Write(header[SharedRingLayout.RequestProducerOffset..], start);
        MemoryMarshal.Write(header[SharedRingLayout.RequestEventOffset..], start + 1);
        MemoryMarshal.Write(header[SharedRingLayout.ResponseProducerOffset..], start);
        MemoryMarshal.Write(header[SharedRingLayout.ResponseEventOffset..], start + 1);
        var front = new FrontRing(page, 4096, 64, start);
        var back = new BackRing(page, 4096, 64, start);
        using var toBack = new TestEventChannel();
        using var toFront = new TestEventChannel();
        int frontPushes = 0, backPushes = 0;

        Task frontTask = Task.Factory.StartNew(() =>
        {
            uint sent = 0, received = 0;
            while (received < messages)
            {
                bool produced = false;
                while (sent < messages && sent - received < window && !front.IsFull)
                {
                    front.WriteRequest(RingMessage.Request(sent++));
                    produced = true;
                }

                if (produced)
                {
                    frontPushes++;
                    if (front.PushRequestsAndCheckNotify()) toBack.Notify();
                }

                while (front.TryConsumeResponse(out RingMessage response))
                {
                    if (!response.IsResponseTo(received)) throw new InvalidOperationException($"response {response.Seq} where {received} was due");
                    received++;
                }

                if (received == messages) break;
                if (sent < messages && sent - received < window && !front.IsFull) continue;
                if (!front.FinalCheckForResponses()) toFront.Wait("the front end");
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        Task backTask = Task.Factory.StartNew(() =>
        {
            int answered = 0;
            while (answered < messages)
            {
                bool produced = false;
                while (back.TryConsumeRequest(out RingMessage request))
                {
                    back.WriteResponse(RingMessage.ResponseTo(request));
                    answered++;
                    produced = true;
                }

                if (produced)
                {
                    backPushes++;
                    if (back.PushResponsesAndCheckNotify()) toFront.Notify();
                }

                if (answered == messages) break;
                if (!back.FinalCheckForRequests()) toBack.Wait("the back end");
            }
        }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        await Task.WhenAll(frontTask, backTask).WaitAsync(TimeSpan.FromMinutes(5));

        Assert.Equal(start + (uint)messages, front.RequestProducerPrivate);
        Assert.Equal(start + (uint)messages, back.ResponseProducerPrivate);
        Assert.False(front.IsFaulted || back.IsFaulted);
        // A notification only when the peer asked for one: never more than one per push.
        Assert.InRange(toBack.Notifications, 1, frontPushes);
        Assert.InRange(toFront.Notifications, 1, backPushes);
        if (window == 1) Assert.Equal(messages, frontPushes);
    }
}
