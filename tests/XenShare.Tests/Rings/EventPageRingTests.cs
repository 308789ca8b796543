using DisplifAbi = XenShare.Abi.Displif;
using System.Runtime.CompilerServices;
using XenShare.Abi;
using XenShare.Rings;

namespace XenShare.Tests.Rings;

/// <summary>DP02's event page (displif's <c>xendispl_event_page</c>) with RG02's wrap and RG04's hostile indexes.</summary>
public sealed class EventPageRingTests : IDisposable
{
    private readonly GuardedMemory _page = new(1);

    public void Dispose() => _page.Dispose();

    private ref uint InCons => ref _page.U32(0);
    private ref uint InProd => ref _page.U32(4);

    private static xendispl_evt PageFlip(ushort id, ulong fbCookie) =>
        new() { id = id, type = DisplifAbi.XENDISPL_EVT_PG_FLIP, op = new xendispl_evt_op { pg_flip = new xendispl_pg_flip_evt { fb_cookie = fbCookie } } };

    private (EventPageProducer Producer, EventPageConsumer Consumer) Attach(uint start)
    {
        InCons = InProd = start;
        return (EventPageProducer.ForDisplif(_page.Address), EventPageConsumer.ForDisplif(_page.Address));
    }

    [Fact]
    public void DP02_RG01_displif_event_page_has_63_slots_of_64_bytes_from_offset_64()
    {
        var (producer, consumer) = Attach(0);
        Assert.Equal(DisplifAbi.XENDISPL_IN_RING_LEN, producer.EntryCount);
        Assert.Equal(63, consumer.EntryCount);
        Assert.Equal(DisplifAbi.XENDISPL_IN_RING_OFFS, producer.RingOffset);
        Assert.Equal(Unsafe.SizeOf<xendispl_evt>(), producer.EntrySize);
        Assert.Equal(Unsafe.SizeOf<xendispl_event_page>(), EventPageRing.DisplifLayout.RingOffset);

        Assert.True(producer.TryWrite(PageFlip(7, 0x1122334455667788)));
        Assert.Equal(1u, InProd);
        Assert.Equal(7, _page.Span[64]);                                                  // id
        Assert.Equal(DisplifAbi.XENDISPL_EVT_PG_FLIP, _page.Span[66]);                       // type
        Assert.Equal(0x88, _page.Span[72]);                                               // op.pg_flip.fb_cookie
        Assert.True(consumer.TryRead(out xendispl_evt evt));
        Assert.Equal(7, evt.id);
        Assert.Equal(0x1122334455667788UL, evt.op.pg_flip.fb_cookie);
        Assert.Equal(1u, InCons);
        Assert.False(consumer.TryRead(out evt));
    }

    [Fact]
    public void DP02_a_full_event_ring_refuses_the_64th_event_until_one_is_consumed()
    {
        var (producer, consumer) = Attach(0);
        for (ushort i = 0; i < 63; i++) Assert.True(producer.TryWrite(PageFlip(i, i)));
        Assert.Equal(63, producer.Unconsumed());
        Assert.False(producer.TryWrite(PageFlip(63, 63)));
        Assert.Equal(63u, InProd);

        Assert.True(consumer.TryRead(out xendispl_evt first));
        Assert.Equal(0, first.id);
        Assert.True(producer.TryWrite(PageFlip(63, 63)));   // slot 0 again (63 % 63)
        for (ushort i = 1; i <= 63; i++)
        {
            Assert.True(consumer.TryRead(out xendispl_evt evt));
            Assert.Equal(i, evt.id);
        }

        Assert.Equal(0, consumer.Available());
    }

    [Theory]
    [InlineData(0xFFFFFFF0u)]
    [InlineData(0xFFFFFF00u)]
    [InlineData(0xFFFFFFFFu)]
    public void RG02_event_indexes_wrap_at_2_to_the_32_without_overwriting_an_unconsumed_event(uint start)
    {
        var (producer, consumer) = Attach(start);
        ushort written = 0, read = 0;
        int[] bursts = [5, 70, 1, 63, 30, 64, 2, 100];
        foreach (int burst in bursts)
        {
            // Fill as far as the producer allows (a full ring refuses), then drain and check the order.
            for (int i = 0; i < burst && producer.TryWrite(PageFlip(written, written)); i++) written++;
            while (consumer.TryRead(out xendispl_evt evt))
            {
                Assert.Equal(read, evt.id);
                Assert.Equal(read, evt.op.pg_flip.fb_cookie);
                read++;
            }
        }

        Assert.Equal(written, read);
        Assert.True(written > 200);
        Assert.Equal(unchecked(start + written), InProd);
        Assert.Equal(unchecked(start + written), InCons);
    }

    [Fact]
    public void RG02_across_the_wrap_slots_repeat_early_so_the_producer_reports_full_instead_of_overwriting()
    {
        // 2^32 % 63 == 4: index 0xFFFFFFFC names slot 0, as does index 0.
        var (producer, consumer) = Attach(0xFFFFFFFC);
        int accepted = 0;
        while (producer.TryWrite(PageFlip((ushort)accepted, (ulong)accepted))) accepted++;
        Assert.Equal(4, accepted);   // 0xFFFFFFFC..0xFFFFFFFF; index 0 would overwrite slot 0
        for (int i = 0; i < accepted; i++)
        {
            Assert.True(consumer.TryRead(out xendispl_evt evt));
            Assert.Equal(i, evt.id);
        }

        // Past the wrap the ring holds 63 again.
        accepted = 0;
        while (producer.TryWrite(PageFlip((ushort)accepted, 0))) accepted++;
        Assert.Equal(63, accepted);
    }

    [Theory]
    [InlineData(64u)]          // more than the ring holds
    [InlineData(0x80000000u)]
    [InlineData(0xFFFFFFFFu)]  // behind the consumer
    public void RG04_an_event_producer_outside_the_ring_is_a_protocol_error(uint delta)
    {
        var (_, consumer) = Attach(0xFFFFFFF0);
        InProd = unchecked(0xFFFFFFF0 + delta);
        Assert.Throws<RingProtocolException>(() => consumer.TryRead(out xendispl_evt _));
        Assert.True(consumer.IsFaulted);
        InProd = 0xFFFFFFF1;
        Assert.Throws<RingProtocolException>(() => consumer.Available());
        Assert.Equal(0xFFFFFFF0u, InCons);   // nothing consumed
    }

    [Theory]
    [InlineData(1u)]           // the consumer claims an event never written
    [InlineData(0xFFFFFFC0u)]  // 64 behind: more than the ring holds
    public void RG04_an_event_consumer_index_outside_the_ring_is_a_protocol_error(uint delta)
    {
        var (producer, _) = Attach(100);
        InCons = unchecked(100 + delta);
        Assert.Throws<RingProtocolException>(() => producer.TryWrite(PageFlip(0, 0)));
        Assert.True(producer.IsFaulted);
        Assert.Equal(100u, InProd);   // nothing written
        InCons = 100;
        Assert.Throws<RingProtocolException>(() => producer.TryWrite(PageFlip(0, 0)));
    }

    [Fact]
    public void Oversized_events_are_rejected()
    {
        var (producer, _) = Attach(0);
        Assert.Throws<ArgumentException>(() => producer.TryWrite(new byte[65]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new EventPageConsumer(_page.Address, 4096, 4, 64));
    }
}
