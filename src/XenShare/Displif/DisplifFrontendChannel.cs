using XenShare.Abi;
using XenShare.Api;
using XenShare.Rings;
using DisplifAbi = XenShare.Abi.Displif;

namespace XenShare.Displif;

/// <summary>
/// One connector's channels on the frontend side (spec DP02): the request ring and the event page in two
/// pages granted to the backend, two unbound event channels, and a thread that receives responses and
/// page-flip events.
/// </summary>
/// <remarks>
/// <para>One request is in flight at a time (<c>_one</c>, as Linux). <c>_ringLock</c> guards the front
/// ring (written by callers, read by the receiver thread), <c>_pending</c> and <c>_flipWaiters</c>; it is
/// a leaf held only for ring index work and table changes, never across an ioctl's wait or an await.</para>
/// <para>Events are accepted only with the expected id (0, 1, 2, ...), as Linux's frontend does; others
/// are counted in <see cref="EventIdMismatches"/> and dropped.</para>
/// </remarks>
internal sealed class DisplifFrontendChannel : IDisposable
{
    private readonly Lock _ringLock = new();
    private readonly SemaphoreSlim _one = new(1, 1);
    private readonly List<(ulong Cookie, TaskCompletionSource Done)> _flipWaiters = [];
    private readonly TaskCompletionSource _completed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TimeSpan _stopPoll;
    private FrontRing? _ring;
    private EventPageConsumer? _events;
    private Thread? _thread;
    private volatile bool _stop;
    private ushort _nextId;
    private ushort _expectedEventId;
    private (ushort Id, TaskCompletionSource<xendispl_resp> Done)? _pending;
    private int _mismatches;
    private Exception? _fault;

    public DisplifFrontendChannel(int index, TimeSpan stopPoll)
    {
        Index = index;
        _stopPoll = stopPoll;
    }

    public int Index { get; }

    public SharedPages? Pages { get; private set; }

    public EventChannels? Evtchn { get; private set; }

    public EventPort RequestPort { get; private set; }

    public EventPort EventPort { get; private set; }

    public int EventIdMismatches => Volatile.Read(ref _mismatches);

    public int EventsReceived { get { lock (_ringLock) return _expectedEventId; } }

    public Task Completed => _completed.Task;

    /// <summary>The ring page's address (tests corrupt it to play a hostile frontend).</summary>
    internal long RingAddress => Pages!.Address;

    /// <summary>Grants the two pages, initializes the ring and the event page, allocates the two ports.</summary>
    public void Create(GrantSharer sharer, IGuestProcess process, DomainId backend)
    {
        Pages = sharer.Share(backend, 2);
        Pages.Memory.Span.Clear();
        _ring = FrontRing.Initialize(Pages.Address, XenPage.Size, DisplifBackendConnection.EntrySize);
        _events = EventPageConsumer.ForDisplif(Pages.Address + XenPage.Size);
        Evtchn = EventChannels.Open(process);
        RequestPort = Evtchn.BindUnbound(backend);
        EventPort = Evtchn.BindUnbound(backend);
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

    /// <summary>Sends one request and waits for its response (one in flight per connector).</summary>
    public async Task<xendispl_resp> SendAsync(xendispl_req request, TimeSpan timeout, CancellationToken ct)
    {
        await _one.WaitAsync(ct).ConfigureAwait(false);
        var done = new TaskCompletionSource<xendispl_resp>(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            bool notify;
            lock (_ringLock)
            {
                if (_fault is not null) throw new RingProtocolException("the channel is broken: " + _fault.Message, _fault);
                request.id = _nextId++;
                _pending = (request.id, done);
                _ring!.WriteRequest(in request);
                notify = _ring.PushRequestsAndCheckNotify();
            }
            if (notify) Evtchn!.Notify(RequestPort);
            return await done.Task.WaitAsync(timeout, ct).ConfigureAwait(false);
        }
        finally
        {
            lock (_ringLock)
                if (_pending is { } p && ReferenceEquals(p.Done, done)) _pending = null;
            _one.Release();
        }
    }

    /// <summary>A task that completes at the next XENDISPL_EVT_PG_FLIP for <paramref name="fbCookie"/>;
    /// cancelling ends the wait (and forgets the waiter) with <see cref="OperationCanceledException"/>.</summary>
    public Task WaitForFlipAsync(ulong fbCookie, CancellationToken cancellationToken = default)
    {
        if (cancellationToken.IsCancellationRequested) return Task.FromCanceled(cancellationToken);
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_ringLock) _flipWaiters.Add((fbCookie, done));
        if (cancellationToken.CanBeCanceled)
        {
            var registration = cancellationToken.Register(() =>
            {
                if (done.TrySetCanceled(cancellationToken)) ForgetFlip(done.Task);
            });
            _ = done.Task.ContinueWith(static (_, r) => ((CancellationTokenRegistration)r!).Dispose(), registration,
                CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        return done.Task;
    }

    /// <summary>Forgets a flip waiter (the request failed).</summary>
    public void ForgetFlip(Task waiter)
    {
        lock (_ringLock) _flipWaiters.RemoveAll(w => w.Done.Task == waiter);
    }

    private void Run()
    {
        try
        {
            while (!_stop)
            {
                bool more;
                lock (_ringLock) more = Receive();
                if (more) continue;
                if (Evtchn!.WaitPending(_stopPoll) is { } port) Evtchn.Unmask(port);
            }
        }
        catch (Exception e)
        {
            // A hostile backend (RG04) or a broken channel: fail the waiters, stop.
            List<TaskCompletionSource> flips;
            TaskCompletionSource<xendispl_resp>? pending;
            lock (_ringLock)
            {
                _fault = e;
                pending = _pending?.Done;
                flips = [.. _flipWaiters.Select(w => w.Done)];
                _flipWaiters.Clear();
            }
            pending?.TrySetException(e);
            foreach (var f in flips) f.TrySetException(e);
        }
        finally
        {
            _completed.TrySetResult();
        }
    }

    /// <summary>Consumes responses and events; true when it should look again before waiting.</summary>
    private bool Receive()
    {
        while (_ring!.TryConsumeResponse(out xendispl_resp response))
        {
            if (_pending is { } p && p.Id == response.id)
            {
                _pending = null;
                p.Done.TrySetResult(response);
            }
            // A response to a request that timed out is dropped, as Linux drops it.
        }
        while (_events!.TryRead(out xendispl_evt evt))
        {
            if (evt.id != _expectedEventId)
            {
                Interlocked.Increment(ref _mismatches);   // displif note 3, docs/design.md: Linux drops it silently
                continue;
            }
            _expectedEventId++;
            if (evt.type != DisplifAbi.XENDISPL_EVT_PG_FLIP) continue;
            int i = _flipWaiters.FindIndex(w => w.Cookie == evt.op.pg_flip.fb_cookie);
            if (i >= 0)
            {
                var waiter = _flipWaiters[i];
                _flipWaiters.RemoveAt(i);
                waiter.Done.TrySetResult();
            }
        }
        return _ring.FinalCheckForResponses();
    }

    /// <summary>Unbinds the ports and frees the pages (after the backend let go and the thread ended).</summary>
    public void Dispose()
    {
        if (Evtchn is { } evtchn)
        {
            try { evtchn.Unbind(RequestPort); } catch (XenShareException) { }
            try { evtchn.Unbind(EventPort); } catch (XenShareException) { }
            evtchn.Dispose();
        }
        Pages?.Dispose();
        _one.Dispose();
    }
}
