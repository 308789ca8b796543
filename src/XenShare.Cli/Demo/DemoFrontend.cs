using XenShare.Api;

namespace XenShare.Cli.Demo;

/// <summary>
/// The domU side of the demo (a PV display frontend): allocates the framebuffers and the ring page with
/// gntalloc, granted to dom0, binds an unbound event channel, publishes them, then draws each frame into a free
/// buffer and asks for a page flip, reusing a buffer only after the backend answered its previous flip.
/// </summary>
internal sealed class DemoFrontend
{
    private static readonly TimeSpan CloseTimeout = TimeSpan.FromMinutes(1);
    private readonly DemoOptions _options;
    private readonly IGuestProcess _process;
    private readonly DomainId _backend;
    private readonly DemoXenbus _xenbus;
    private readonly Action<int>? _frameDone;
    private int _completed;

    public DemoFrontend(DemoOptions options, IGuestProcess process, DomainId backend, DemoXenbus xenbus, Action<int>? frameDone)
    {
        _options = options;
        _process = process;
        _backend = backend;
        _xenbus = xenbus;
        _frameDone = frameDone;
    }

    /// <summary>Flips answered so far.</summary>
    public int Completed => Volatile.Read(ref _completed);

    /// <summary>True when the backend did not close in time at the end.</summary>
    public bool BackendCloseTimedOut { get; private set; }

    /// <summary>Grant refs allocated (ring + framebuffer pages).</summary>
    public int GrantsAllocated { get; private set; }

    /// <summary>Runs the frontend until every frame was shown or <paramref name="stop"/> fires, then ends access
    /// once the backend is closed. Throws <see cref="OperationCanceledException"/> when stopped.</summary>
    public void Run(CancellationToken stop)
    {
        var o = _options;
        var buffers = new List<SharedPages>();
        SharedPages? ringPage = null;
        bool published = false;
        using var events = EventChannels.Open(_process);
        using var sharer = GrantSharer.Open(_process);
        try
        {
            ringPage = sharer.Share(_backend, 1, writable: true);
            var ring = DisplayRing.InitFrontend(ringPage.Span, ringPage.Address);
            var refs = new GrantRef[o.Buffers][];
            for (int b = 0; b < o.Buffers; b++)
            {
                var pages = sharer.Share(_backend, o.PagesPerBuffer, writable: true);
                buffers.Add(pages);
                refs[b] = [.. pages.Refs];
            }
            GrantsAllocated = 1 + (o.Buffers * o.PagesPerBuffer);
            var port = events.BindUnbound(_backend);
            _xenbus.PublishFrontend(new DemoFrontendInfo(ringPage.Refs[0], port, refs));
            published = true;
            _xenbus.BackendConnected.Wait(stop);

            var inFlight = new bool[o.Buffers];
            for (int frame = 0; frame < o.Frames; frame++)
            {
                int b = frame % o.Buffers;
                while (inFlight[b])
                {
                    Drain(ring, inFlight);
                    if (inFlight[b]) WaitEvent(events, port, stop);
                }
                stop.ThrowIfCancellationRequested();
                TestPattern.Draw(buffers[b].Span, o.Width, o.Height, o.Stride, frame, b);
                var request = new DisplayRequest { Id = (ulong)frame, Operation = (ushort)DisplayOperation.PageFlip, Buffer = (ushort)b, Frame = (uint)frame };
                if (!ring.TryPushRequest(request)) throw new InvalidOperationException("display ring full");
                inFlight[b] = true;
                ring.PublishRequests();
                events.Notify(port);
            }
            while (Array.IndexOf(inFlight, true) >= 0)
            {
                Drain(ring, inFlight);
                if (Array.IndexOf(inFlight, true) >= 0) WaitEvent(events, port, stop);
            }

            // Say goodbye on the ring (best effort: the backend also stops on its own when cancelled).
            if (ring.TryPushRequest(new DisplayRequest { Id = ulong.MaxValue, Operation = (ushort)DisplayOperation.Disconnect }))
            {
                ring.PublishRequests();
                events.Notify(port);
            }
        }
        finally
        {
            if (!published) _xenbus.FrontendFailed();
            // End access only after the backend unmapped everything (xenbus Closed), as a real frontend does;
            // otherwise the grants would linger as deferred reclaims.
            // If it never closes, access ends anyway and the leak check reports what is left.
            if (published && !_xenbus.BackendClosed.Wait(CloseTimeout, CancellationToken.None)) BackendCloseTimedOut = true;
            foreach (var pages in buffers) pages.Dispose();
            ringPage?.Dispose();
        }
    }

    private void Drain(DisplayRing ring, bool[] inFlight)
    {
        while (ring.TryTakeResponse(out var response))
        {
            if (response.Status != 0) throw new XenShareException(-response.Status, $"page flip of frame {response.Frame}");
            if (response.Id >= (ulong)_options.Frames) throw new InvalidDataException($"display ring: response for unknown request {response.Id}");
            inFlight[(int)(response.Id % (ulong)_options.Buffers)] = false;
            int done = Interlocked.Increment(ref _completed);
            _frameDone?.Invoke(done);
        }
    }

    /// <summary>Waits for an event on the port (then unmasks it), checking <paramref name="stop"/> every 100 ms.</summary>
    internal static void WaitEvent(EventChannels events, EventPort port, CancellationToken stop)
    {
        while (true)
        {
            stop.ThrowIfCancellationRequested();
            var pending = events.WaitPending(TimeSpan.FromMilliseconds(100));
            if (pending is EventPort p)
            {
                events.Unmask(p);
                return;
            }
        }
    }
}
