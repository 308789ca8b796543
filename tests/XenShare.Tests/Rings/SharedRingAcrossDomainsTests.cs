using DisplifAbi = XenShare.Abi.Displif;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Rings;
using XenShare.Tests.Emulation;

namespace XenShare.Tests.Rings;

/// <summary>
/// The rings across the seam: the front end in a domU process shares a page with gntalloc, the back end in
/// a dom0 process maps it with gntdev, an interdomain event channel carries the notifications. The base
/// class checks afterwards that nothing leaked (fds, mappings, grants, ports) and no isolation hazard arose.
/// </summary>
public sealed class SharedRingAcrossDomainsTests : EmulatorTest
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(60);

    private static void WaitEvent(EventChannels channels, string who)
    {
        EventPort port = channels.WaitPending(Generous) ?? throw new TimeoutException(who + ": no event within " + Generous + " (lost wake-up)");
        channels.Unmask(port);
    }

    [Fact]
    public async Task RG01_RG03_front_in_domU_and_back_in_dom0_over_a_granted_page_and_an_event_channel()
    {
        const int Messages = 5000;
        const int Window = 6;
        int entrySize = Math.Max(System.Runtime.CompilerServices.Unsafe.SizeOf<xendispl_req>(), System.Runtime.CompilerServices.Unsafe.SizeOf<xendispl_resp>());

        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, pageCount: 1);
        var front = FrontRing.Initialize(pages.Address, pages.Length, entrySize);

        using var gntdev = GrantDevice.Open(P0);
        using var evU = EventChannels.Open(PU);
        using var ev0 = EventChannels.Open(P0);
        EventPort portU = evU.BindUnbound(Dom0.Id);
        EventPort port0 = ev0.BindInterdomain(DomU.Id, portU);

        using (var mapping = gntdev.Map(DomU.Id, [pages.Refs[0]]))
        {
            var back = new BackRing(mapping.Address, mapping.Length, entrySize);
            Assert.Equal(32, back.EntryCount);

            Task frontTask = Task.Factory.StartNew(() =>
            {
                var ids = new PendingRequestIds(front.EntryCount);
                ulong sent = 0, received = 0;
                while (received < Messages)
                {
                    bool produced = false;
                    while (sent < Messages && sent - received < Window)
                    {
                        var request = new xendispl_req { id = ids.Issue(), operation = DisplifAbi.XENDISPL_OP_PG_FLIP };
                        request.op.pg_flip.fb_cookie = sent++;
                        front.WriteRequest(request);
                        produced = true;
                    }

                    if (produced && front.PushRequestsAndCheckNotify()) evU.Notify(portU);
                    while (front.TryConsumeResponse(out xendispl_resp response))
                    {
                        ids.Complete(response.id);
                        Assert.Equal(DisplifAbi.XENDISPL_OP_PG_FLIP, response.operation);
                        Assert.Equal(-(int)(received % 3), response.status);
                        received++;
                    }

                    if (received == Messages) break;
                    if (sent < Messages && sent - received < Window) continue;
                    if (!front.FinalCheckForResponses()) WaitEvent(evU, "domU's front end");
                }

                Assert.Equal(0, ids.Count);
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

            Task backTask = Task.Factory.StartNew(() =>
            {
                int answered = 0;
                while (answered < Messages)
                {
                    bool produced = false;
                    while (back.TryConsumeRequest(out xendispl_req request))
                    {
                        Assert.Equal((ulong)answered, request.op.pg_flip.fb_cookie);
                        back.WriteResponse(new xendispl_resp { id = request.id, operation = request.operation, status = -(answered % 3) });
                        answered++;
                        produced = true;
                    }

                    if (produced && back.PushResponsesAndCheckNotify()) ev0.Notify(port0);
                    if (answered == Messages) break;
                    if (!back.FinalCheckForRequests()) WaitEvent(ev0, "dom0's back end");
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

            await Task.WhenAll(frontTask, backTask).WaitAsync(TimeSpan.FromMinutes(5));
            Assert.Equal((uint)Messages, back.ResponseProducerPrivate);
        }

        ev0.Unbind(port0);
        evU.Unbind(portU);
    }

    [Fact]
    public void DP02_RG04_event_page_across_domains_and_a_hostile_domU_faults_dom0s_back_ring()
    {
        using var sharer = GrantSharer.Open(PU);
        using var pages = sharer.Share(Dom0.Id, pageCount: 2);   // page 0: request ring, page 1: event page
        long eventPageU = pages.Address + 4096;
        var front = FrontRing.Initialize(pages.Address, 4096, 64);
        GuestMemory.AsSpan(eventPageU, 64).Clear();
        var consumer = EventPageConsumer.ForDisplif(eventPageU);

        using var gntdev = GrantDevice.Open(P0);
        using var ring = gntdev.Map(DomU.Id, [pages.Refs[0]]);
        using var eventPage = gntdev.Map(DomU.Id, [pages.Refs[1]]);
        var back = new BackRing(ring.Address, 4096, 64);
        var producer = EventPageProducer.ForDisplif(eventPage.Address);

        // dom0 writes page-flip events, domU reads them: more than the ring holds, in rounds.
        ulong next = 0, seen = 0;
        for (int round = 0; round < 5; round++)
        {
            while (producer.TryWrite(new xendispl_evt { type = DisplifAbi.XENDISPL_EVT_PG_FLIP, op = new xendispl_evt_op { pg_flip = new xendispl_pg_flip_evt { fb_cookie = next } } }))
                next++;
            Assert.Equal(63, consumer.Available());
            while (consumer.TryRead(out xendispl_evt evt))
            {
                Assert.Equal(DisplifAbi.XENDISPL_EVT_PG_FLIP, evt.type);
                Assert.Equal(seen++, evt.op.pg_flip.fb_cookie);
            }
        }

        Assert.Equal(5UL * 63, seen);

        // A hostile domU: req_prod far ahead. dom0's back end reports it and reads nothing.
        front.WriteRequest(new xendispl_req { id = 1, operation = DisplifAbi.XENDISPL_OP_PG_FLIP });
        front.PushRequests();
        Assert.True(back.TryConsumeRequest(out xendispl_req _));
        GuestMemory.AsSpan(pages.Address, 4).Fill(0x7F);   // req_prod = 0x7F7F7F7F
        Assert.Throws<RingProtocolException>(() => back.FinalCheckForRequests());
        Assert.True(back.IsFaulted);
    }
}
