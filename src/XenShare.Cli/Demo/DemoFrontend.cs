using System.Diagnostics;
using XenShare.Displif;
using XenShare.Xenstore;

namespace XenShare.Cli.Demo;

/// <summary>
/// The domU side of the demo: a display driver on the library's <see cref="DisplifFrontend"/>. It connects
/// to the vdispl device the toolstack wrote (xenbus walk to Connected), creates its framebuffers
/// (frontend-allocated: its own pages granted to dom0; with be-alloc: buffers dom0 allocates and it maps),
/// attaches them (XR24), shows frame 0 with SET_CONFIG and every later frame with PG_FLIP, drawing each frame
/// into the next buffer only once the previous flip's XENDISPL_EVT_PG_FLIP arrived. At the end it turns the
/// connector off, detaches and destroys the buffers and closes the device (Closing, wait for the backend,
/// Closed), and frees everything even when stopped.
/// </summary>
internal sealed class DemoFrontend
{
    /// <summary>How long one request may wait: the backend answers a present after its display wrote the PNG
    /// file, which at 4K takes longer than Linux's 3 s.</summary>
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    private static readonly TimeSpan CloseTimeout = TimeSpan.FromMinutes(1);
    private readonly DemoOptions _options;
    private readonly Action<int>? _frameDone;
    private readonly long[] _roundTrips;
    private int _completed;

    /// <summary>Prepares a run of <paramref name="options"/>; <paramref name="frameDone"/> is called with the
    /// number of frames shown so far.</summary>
    public DemoFrontend(DemoOptions options, Action<int>? frameDone)
    {
        _options = options;
        _frameDone = frameDone;
        _roundTrips = new long[options.Frames];
    }

    /// <summary>Frames shown so far (presents answered and, for PG_FLIP, their flip event received).</summary>
    public int Completed => Volatile.Read(ref _completed);

    /// <summary>True when the backend did not let go within the close timeout at the end.</summary>
    public bool BackendCloseTimedOut { get; private set; }

    /// <summary>FB_ATTACHes the backend answered with ENOMEM (its display could not map the buffer); with any, no
    /// frame is shown.</summary>
    public int MappingErrors { get; private set; }

    /// <summary>True unless a DBUF_DESTROY was answered with an error (a release that did not happen in time).</summary>
    public bool Released { get; private set; } = true;

    /// <summary>Stopwatch ticks from a frame's request to its completion (SET_CONFIG answered, or the flip
    /// event of PG_FLIP received), by frame.</summary>
    public long RoundTripTicks(int frame) => _roundTrips[frame];

    /// <summary>Runs the frontend until every frame was shown or <paramref name="stop"/> fires (then
    /// <see cref="OperationCanceledException"/>), then tears down.</summary>
    /// <param name="client">domU's xenstore connection.</param>
    /// <param name="process">domU's process.</param>
    /// <param name="self">domU.</param>
    /// <param name="deviceId">The vdispl device id.</param>
    /// <param name="stop">Stops the run.</param>
    public async Task RunAsync(XenstoreClient client, IGuestProcess process, DomainId self, int deviceId, CancellationToken stop)
    {
        var o = _options;
        var frontend = await DisplifFrontend.ConnectAsync(client, process, self, deviceId, writeVersion: true, stop).ConfigureAwait(false);
        frontend.RequestTimeout = RequestTimeout;
        try
        {
            var buffers = new List<DisplifBuffer>(o.Buffers);
            var framebuffers = new List<DisplifFramebuffer>(o.Buffers);
            for (int b = 0; b < o.Buffers; b++)
            {
                var buffer = frontend.BackendAllocates
                    ? await frontend.CreateBackendBufferAsync(o.Width, o.Height, 32, stop).ConfigureAwait(false)
                    : await frontend.CreateBufferAsync(o.Width, o.Height, 32, stop).ConfigureAwait(false);
                buffers.Add(buffer);
                try
                {
                    framebuffers.Add(await frontend.AttachFramebufferAsync(buffer, DisplifPixelFormat.XR24, cancellationToken: stop).ConfigureAwait(false));
                }
                catch (DisplifRequestException e) when (e.Status == -Abi.Errno.ENOMEM)
                {
                    // The backend's display could not map the buffer (DM04): nothing can be shown. Tear down.
                    MappingErrors++;
                }
            }

            if (MappingErrors == 0)
            {
                for (int frame = 0; frame < o.Frames; frame++)
                {
                    stop.ThrowIfCancellationRequested();
                    int b = frame % o.Buffers;
                    TestPattern.Draw(buffers[b].Pixels, o.Width, o.Height, buffers[b].Pitch, frame, b);
                    long start = Stopwatch.GetTimestamp();
                    if (frame == 0) await frontend.SetConfigAsync(0, framebuffers[b], stop).ConfigureAwait(false);   // the mode set shows frame 0
                    else await frontend.PageFlipAsync(0, framebuffers[b], stop).ConfigureAwait(false);
                    _roundTrips[frame] = Stopwatch.GetTimestamp() - start;
                    int done = Interlocked.Increment(ref _completed);
                    _frameDone?.Invoke(done);
                }
                await frontend.SetConfigAsync(0, null, stop).ConfigureAwait(false);
            }

            foreach (var framebuffer in framebuffers) await frontend.DetachFramebufferAsync(framebuffer, stop).ConfigureAwait(false);
            foreach (var buffer in buffers)
            {
                try
                {
                    await frontend.DestroyBufferAsync(buffer, stop).ConfigureAwait(false);
                }
                catch (DisplifRequestException)
                {
                    Released = false;   // -EBUSY: the backend could not release it in time
                }
            }
        }
        finally
        {
            // Closing, wait until the backend let go of everything, Closed; then the pages, ports and grants are
            // freed (also when stopped: a real driver unloads the same way).
            using var close = new CancellationTokenSource(CloseTimeout);
            try
            {
                await frontend.CloseAsync(close.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                BackendCloseTimedOut = true;
            }
        }
    }
}
