using DisplifAbi = XenShare.Abi.Displif;
using System.Diagnostics;
using XenShare.Abi;
using XenShare.Api;
using XenShare.Rings;

namespace XenShare.Displif;

/// <summary>
/// One connector's channels on the backend side (spec DP02): the request ring and the event page mapped
/// from the frontend, the two event channels bound, and the thread that serves the ring.
/// </summary>
/// <remarks>
/// <para>The thread waits on the connector's own evtchn file (poll, woken every
/// <see cref="DisplifBackendOptions.StopPollInterval"/> to see whether it must stop, or earlier when a
/// paced page-flip event is due), consumes requests with the final check of RG03 so no wake-up is lost,
/// hands each to the connection and answers it with the same id. It alone touches the ring and the event
/// page, so neither needs a lock; <c>_flips</c> is the thread's too.</para>
/// <para>A hostile index (RG04) or a failing event channel ends the thread and faults the connection.</para>
/// </remarks>
internal sealed class DisplifBackendChannel
{
    private readonly DisplifBackendConnection _connection;
    private readonly Queue<(ulong Cookie, long Due)> _flips = new();
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly long _interval;
    private BackRing? _ring;
    private EventPageProducer? _events;
    private Thread? _thread;
    private volatile bool _stop;
    private long _lastDue;
    private ushort _nextEventId;

    public DisplifBackendChannel(DisplifBackendConnection connection, DisplifConnector connector)
    {
        _connection = connection;
        Connector = connector;
        _interval = (long)(connection.Options.FrameInterval.TotalSeconds * Stopwatch.Frequency);
        _lastDue = long.MinValue / 2;
    }

    public DisplifConnector Connector { get; }

    public int Index => Connector.Index;

    public GrantMapping? RingMap { get; set; }

    public GrantMapping? EventMap { get; set; }

    public EventChannels? Evtchn { get; set; }

    public EventPort? RequestPort { get; set; }

    public EventPort? EventPort { get; set; }

    /// <summary>Completes when the thread has ended (at once when it never started).</summary>
    public Task Completed => _completed.Task;

    /// <summary>The page-flip events sent so far (the next event id).</summary>
    public int EventsSent => _nextEventId;

    /// <summary>Attaches the ring and the event page (after both are mapped).</summary>
    public void Attach()
    {
        _ring = new BackRing(RingMap!.Address, RingMap.Length, DisplifBackendConnection.EntrySize);
        _events = EventPageProducer.ForDisplif(EventMap!.Address);
    }

    public void Start(string name)
    {
        _thread = new Thread(Run) { IsBackground = true, Name = name };
        _thread.Start();
    }

    public void RequestStop()
    {
        _stop = true;
        if (_thread is null) _completed.TrySetResult();
    }

    /// <summary>Queues the XENDISPL_EVT_PG_FLIP of an accepted flip, paced to the frame interval
    /// (displif note 2, docs/design.md). Called on this channel's thread only.</summary>
    public void QueueFlipEvent(ulong fbCookie)
    {
        long now = Stopwatch.GetTimestamp();
        long due = Math.Max(now, _lastDue + _interval);
        _lastDue = due;
        _flips.Enqueue((fbCookie, due));
    }

    private void Run()
    {
        try
        {
            Serve();
        }
        catch (Exception e)
        {
            // RG04 (RingProtocolException), a broken event channel (XenShareException), or a bug: never take
            // the process down from a ring thread; the device closes instead.
            if (!_stop) _connection.Fault(this, e);
        }
        finally
        {
            _completed.TrySetResult();
        }
    }

    private void Serve()
    {
        BackRing ring = _ring!;
        EventChannels evtchn = Evtchn!;
        EventPort requestPort = RequestPort!.Value;
        while (!_stop)
        {
            while (!_stop && ring.TryConsumeRequest(out xendispl_req request))
            {
                xendispl_resp response = _connection.Handle(this, in request);
                ring.WriteResponse(in response);
                if (ring.PushResponsesAndCheckNotify()) evtchn.Notify(requestPort);
            }

            if (_stop) break;
            SendDueEvents();
            if (ring.FinalCheckForRequests()) continue;   // RG03: a request pushed meanwhile is not missed

            TimeSpan timeout = _connection.Options.StopPollInterval;
            if (_flips.Count > 0)
            {
                long left = _flips.Peek().Due - Stopwatch.GetTimestamp();
                TimeSpan untilDue = TimeSpan.FromSeconds(Math.Max(0, left) / (double)Stopwatch.Frequency);
                if (untilDue < timeout) timeout = untilDue;
            }
            if (timeout <= TimeSpan.Zero) continue;
            if (evtchn.WaitPending(timeout) is { } port) evtchn.Unmask(port);
        }
    }

    private void SendDueEvents()
    {
        if (_flips.Count == 0) return;
        long now = Stopwatch.GetTimestamp();
        bool sent = false;
        while (_flips.Count > 0 && _flips.Peek().Due <= now)
        {
            var evt = new xendispl_evt { id = _nextEventId, type = DisplifAbi.XENDISPL_EVT_PG_FLIP };
            evt.op.pg_flip.fb_cookie = _flips.Peek().Cookie;
            // A full page (a frontend that stopped reading) keeps the event for the next wake-up.
            if (!_events!.TryWrite(in evt))
            {
                _lastDue = Math.Max(_lastDue, now + _interval);
                var (cookie, _) = _flips.Dequeue();
                var rest = _flips.ToArray();
                _flips.Clear();
                _flips.Enqueue((cookie, now + Math.Max(_interval, Stopwatch.Frequency / 100)));
                foreach (var f in rest) _flips.Enqueue(f);
                break;
            }
            _flips.Dequeue();
            _nextEventId++;   // displif note 3, docs/design.md: ids 0, 1, 2, ... per connector
            sent = true;
        }
        if (sent) Evtchn!.Notify(EventPort!.Value);
    }
}
