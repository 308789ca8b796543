using System.Runtime.InteropServices;
using XenShare.Rings;

namespace XenShare.Tests.Rings;

/// <summary>RG02-RG04 on one page: free-running indexes, the notify rule, the final check and hostile peers.</summary>
public sealed class SharedRingTests : IDisposable
{
    private const int EntrySize = 64;
    private readonly GuardedMemory _memory = new(1);

    public void Dispose() => _memory.Dispose();

    private ref uint ReqProd => ref _memory.U32(0);
    private ref uint ReqEvent => ref _memory.U32(4);
    private ref uint RspProd => ref _memory.U32(8);
    private ref uint RspEvent => ref _memory.U32(12);

    /// <summary>Both ends attached at <paramref name="start"/>, the shared header written to match.</summary>
    private (FrontRing Front, BackRing Back) Attach(uint start)
    {
        ReqProd = RspProd = start;
        ReqEvent = RspEvent = start + 1;
        return (new FrontRing(_memory.Address, 4096, EntrySize, start), new BackRing(_memory.Address, 4096, EntrySize, start));
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(0xFFFFFFF0u)]
    [InlineData(0xFFFFFFFFu)]
    [InlineData(0x7FFFFFF8u)]
    public void RG02_free_running_indexes_wrap_at_2_to_the_32(uint start)
    {
        var (front, back) = Attach(start);
        uint seq = 0;
        uint answered = 0;
        int[] batches = [1, 7, 32, 3, 31, 32, 5, 17];
        foreach (int batch in batches)
        {
            for (int i = 0; i < batch; i++) front.WriteRequest(RingMessage.Request(seq++));
            front.PushRequests();
            Assert.Equal(batch, back.UnconsumedRequests());
            while (back.TryConsumeRequest(out RingMessage request)) back.WriteResponse(RingMessage.ResponseTo(request));
            back.PushResponses();
            Assert.Equal(batch, front.UnconsumedResponses());
            while (front.TryConsumeResponse(out RingMessage response))
            {
                Assert.True(response.IsResponseTo(answered), $"response {answered}");
                answered++;
            }
        }

        Assert.Equal(seq, answered);
        Assert.Equal(start + seq, front.RequestProducerPrivate);
        Assert.Equal(start + seq, front.ResponseConsumer);
        Assert.Equal(start + seq, back.RequestConsumer);
        Assert.Equal(start + seq, back.ResponseProducerPrivate);
        Assert.Equal(start + seq, ReqProd);
        Assert.Equal(start + seq, RspProd);
    }

    [Fact]
    public void RG02_index_0xFFFFFFFF_is_the_last_slot_and_0_the_first()
    {
        var (front, _) = Attach(0xFFFFFFFE);
        front.WriteRequest(RingMessage.Request(0xAA));   // index 0xFFFFFFFE: slot 30
        front.WriteRequest(RingMessage.Request(0xBB));   // index 0xFFFFFFFF: slot 31
        front.WriteRequest(RingMessage.Request(0xCC));   // index 0: slot 0
        front.PushRequests();
        Assert.Equal(0xAAu, MemoryMarshal.Read<uint>(_memory.Span[(64 + 30 * 64)..]));
        Assert.Equal(0xBBu, MemoryMarshal.Read<uint>(_memory.Span[(64 + 31 * 64)..]));
        Assert.Equal(0xCCu, MemoryMarshal.Read<uint>(_memory.Span[64..]));
        Assert.Equal(1u, ReqProd);
    }

    // RG03: notify iff the peer's event index lies in (old, new], in 32-bit arithmetic:
    // (uint)(new - event) < (uint)(new - old).
    [Theory]
    [InlineData(0u, 1u, 1u, true)]
    [InlineData(0u, 1u, 2u, false)]        // the peer asked for a later index
    [InlineData(0u, 5u, 3u, true)]         // crossed in the middle of the batch
    [InlineData(0u, 5u, 5u, true)]         // the last of the batch
    [InlineData(0u, 5u, 6u, false)]
    [InlineData(0u, 5u, 0u, false)]        // at old: passed before this push
    [InlineData(10u, 10u, 10u, false)]     // nothing new: never notify
    [InlineData(10u, 10u, 11u, false)]
    [InlineData(100u, 132u, 101u, true)]   // a full ring's worth
    [InlineData(100u, 132u, 50u, false)]   // the peer is busy (stale event): no needless notify
    [InlineData(0xFFFFFFFEu, 2u, 0xFFFFFFFFu, true)]
    [InlineData(0xFFFFFFFEu, 2u, 0u, true)]
    [InlineData(0xFFFFFFFEu, 2u, 2u, true)]
    [InlineData(0xFFFFFFFEu, 2u, 3u, false)]
    [InlineData(0xFFFFFFFEu, 2u, 0xFFFFFFFEu, false)]
    [InlineData(0xFFFFFFF0u, 0xFFFFFFF8u, 0xFFFFFFF1u, true)]
    [InlineData(0xFFFFFFF0u, 0xFFFFFFF8u, 0x00000001u, false)]
    public void RG03_push_notifies_exactly_when_the_event_index_is_crossed(uint old, uint now, uint evt, bool expected)
    {
        Assert.Equal(expected, unchecked(now - evt) < unchecked(now - old));   // the rule itself

        // Requests: the front end pushes now - old requests with req_event = evt.
        var (front, back) = Attach(old);
        ReqEvent = evt;
        for (uint i = old; i != now; i++) front.WriteRequest(RingMessage.Request(i));
        Assert.Equal(expected, front.PushRequestsAndCheckNotify());
        Assert.Equal(now, ReqProd);

        // Responses: the back end answers them with rsp_event = evt.
        while (back.TryConsumeRequest(out RingMessage request)) back.WriteResponse(RingMessage.ResponseTo(request));
        RspEvent = evt;
        Assert.Equal(expected, back.PushResponsesAndCheckNotify());
        Assert.Equal(now, RspProd);
    }

    [Fact]
    public void RG03_a_second_push_without_new_requests_does_not_notify()
    {
        var (front, _) = Attach(0);
        front.WriteRequest(RingMessage.Request(0));
        Assert.True(front.PushRequestsAndCheckNotify());
        Assert.False(front.PushRequestsAndCheckNotify());
    }

    [Fact]
    public void RG03_final_check_for_requests_re_arms_req_event_and_catches_a_racing_push()
    {
        var (front, back) = Attach(0);

        // Idle: the final check arms req_event = req_cons + 1 and finds nothing.
        Assert.False(back.FinalCheckForRequests());
        Assert.Equal(1u, ReqEvent);
        front.WriteRequest(RingMessage.Request(0));
        Assert.True(front.PushRequestsAndCheckNotify());   // crosses 1: notify

        // The back end is busy (it does not re-arm): the next pushes do not notify...
        Assert.True(back.TryConsumeRequest(out RingMessage _));
        back.WriteResponse(default(RingMessage));
        front.WriteRequest(RingMessage.Request(1));
        Assert.False(front.PushRequestsAndCheckNotify());
        // ...and the final check finds that request without an event: no lost wake-up.
        Assert.True(back.FinalCheckForRequests());
        Assert.Equal(1u, ReqEvent);   // work found before re-arming: req_event untouched
        Assert.True(back.TryConsumeRequest(out RingMessage _));

        // Now idle again: re-armed at req_cons + 1 = 3, and the next push notifies.
        Assert.False(back.FinalCheckForRequests());
        Assert.Equal(3u, ReqEvent);
        front.WriteRequest(RingMessage.Request(2));
        Assert.True(front.PushRequestsAndCheckNotify());
        Assert.True(back.FinalCheckForRequests());
    }

    [Fact]
    public void RG03_final_check_for_responses_re_arms_rsp_event_and_catches_a_racing_push()
    {
        var (front, back) = Attach(0xFFFFFFFF);
        Assert.False(front.FinalCheckForResponses());
        Assert.Equal(0u, RspEvent);   // rsp_cons + 1 wraps to 0

        front.WriteRequest(RingMessage.Request(0));
        front.WriteRequest(RingMessage.Request(1));
        front.PushRequests();
        Assert.True(back.TryConsumeRequest(out RingMessage r0));
        back.WriteResponse(RingMessage.ResponseTo(r0));
        Assert.True(back.PushResponsesAndCheckNotify());   // crosses 0
        Assert.True(front.TryConsumeResponse(out RingMessage _));

        // The front end has not re-armed (rsp_event still 0): the second response is pushed silently...
        Assert.True(back.TryConsumeRequest(out RingMessage r1));
        back.WriteResponse(RingMessage.ResponseTo(r1));
        Assert.False(back.PushResponsesAndCheckNotify());
        // ...and found by the final check before the front end would wait.
        Assert.True(front.FinalCheckForResponses());
        Assert.True(front.TryConsumeResponse(out RingMessage _));
        Assert.False(front.FinalCheckForResponses());
        Assert.Equal(2u, RspEvent);
    }

    // ---- RG04: hostile peers ----

    [Theory]
    [InlineData(33u)]          // one more than the ring holds
    [InlineData(0x80000000u)]  // far ahead
    [InlineData(0xFFFFFFFFu)]  // one behind the consumer
    public void RG04_a_request_producer_outside_the_ring_is_a_protocol_error(uint delta)
    {
        var (_, back) = Attach(0xFFFFFFF0);
        ReqProd = unchecked(0xFFFFFFF0 + delta);
        var e = Assert.Throws<RingProtocolException>(() => back.UnconsumedRequests());
        Assert.Contains("req_prod", e.Message, StringComparison.Ordinal);
        Assert.True(back.IsFaulted);

        // Faulted for good: even an index put back to a sane value does not make it read.
        ReqProd = 0xFFFFFFF1;
        Assert.Throws<RingProtocolException>(() => back.TryConsumeRequest(out RingMessage _));
        Assert.Throws<RingProtocolException>(() => back.FinalCheckForRequests());
        Assert.Throws<RingProtocolException>(() => back.PushResponsesAndCheckNotify());
    }

    [Fact]
    public void RG04_requests_beyond_the_slots_still_owed_a_response_are_a_protocol_error()
    {
        var (front, back) = Attach(0);
        for (int i = 0; i < 32; i++) front.WriteRequest(RingMessage.Request((uint)i));
        front.PushRequests();
        for (int i = 0; i < 32; i++) Assert.True(back.TryConsumeRequest(out RingMessage _));
        Assert.Equal(32, back.UnansweredRequests);

        // No response yet, so no slot is free; a front end that pushes one more would overwrite a request.
        ReqProd = 33;
        Assert.Throws<RingProtocolException>(() => back.UnconsumedRequests());
    }

    [Fact]
    public void RG04_responses_to_requests_never_pushed_are_a_protocol_error()
    {
        var (front, _) = Attach(7);
        front.WriteRequest(RingMessage.Request(0));
        front.WriteRequest(RingMessage.Request(1));
        front.PushRequests();
        front.WriteRequest(RingMessage.Request(2));   // committed, not pushed: the back end cannot know it

        RspProd = 10;   // three responses for two pushed requests
        var e = Assert.Throws<RingProtocolException>(() => front.TryConsumeResponse(out RingMessage _));
        Assert.Contains("never issued", e.Message, StringComparison.Ordinal);
        Assert.True(front.IsFaulted);
        Assert.Throws<RingProtocolException>(() => front.WriteRequest(RingMessage.Request(3)));
    }

    [Fact]
    public void RG04_a_response_producer_behind_the_consumer_is_a_protocol_error()
    {
        var (front, _) = Attach(100);
        RspProd = 99;
        Assert.Throws<RingProtocolException>(() => front.FinalCheckForResponses());
    }

    [Fact]
    public void RG04_response_ids_never_issued_or_answered_twice_are_a_protocol_error()
    {
        var ids = new PendingRequestIds(32);
        ushort a = ids.Issue();
        ushort b = ids.Issue();
        Assert.NotEqual(a, b);
        ids.Complete(a);
        Assert.Throws<RingProtocolException>(() => ids.Complete(a));         // answered twice
        Assert.Throws<RingProtocolException>(() => ids.Complete(0x1234));    // never issued
        ids.Complete(b);
        Assert.Equal(0, ids.Count);

        var small = new PendingRequestIds(2);
        small.Issue();
        small.Issue();
        Assert.Throws<InvalidOperationException>(() => small.Issue());
    }

    [Fact]
    public void RG04_ids_wrap_at_65536_and_skip_ids_still_pending()
    {
        var ids = new PendingRequestIds(65536);
        ushort first = ids.Issue();
        for (int i = 1; i < 65536; i++) ids.Complete(ids.Issue());
        Assert.True(ids.IsPending(first));
        ushort next = ids.Issue();   // wrapped: skips the id still pending
        Assert.NotEqual(first, next);
        Assert.Equal(2, ids.Count);
    }

    [Fact]
    public void RG04_a_hostile_peer_changing_an_entry_after_the_copy_does_not_change_what_was_read()
    {
        var (front, back) = Attach(0);
        front.WriteRequest(RingMessage.Request(5));
        front.PushRequests();
        Assert.True(back.TryConsumeRequest(out RingMessage copy));
        _memory.Span[64..80].Fill(0xEE);   // the front end scribbles over the slot afterwards
        Assert.Equal(5u, copy.Seq);
        Assert.Equal(RingMessage.Request(5).Payload, copy.Payload);
    }

    [Fact]
    public void Misuse_by_the_caller_is_an_InvalidOperationException_or_ArgumentException()
    {
        var (front, back) = Attach(0);
        Assert.Throws<InvalidOperationException>(() => back.NextResponse());          // nothing consumed
        Assert.Throws<InvalidOperationException>(() => back.WriteResponse(default(RingMessage)));
        for (int i = 0; i < 32; i++) front.WriteRequest(RingMessage.Request((uint)i));
        Assert.Throws<InvalidOperationException>(() => front.WriteRequest(RingMessage.Request(32)));
        Assert.Throws<InvalidOperationException>(() => front.CommitRequest());
        Assert.Throws<ArgumentException>(() => new FrontRing(_memory.Address, 4096, 8).WriteRequest(default(RingMessage)));
        Assert.False(front.IsFaulted);
    }
}
