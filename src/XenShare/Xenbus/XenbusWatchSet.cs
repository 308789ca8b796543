using System.Globalization;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using XenShare.Xenstore;

namespace XenShare.Xenbus;

/// <summary>
/// A few xenstore watches merged into one level-triggered signal: <see cref="WaitAsync"/> completes when
/// any of them fired since the last call and says which kinds fired. The xenbus helpers never act on an
/// event's path; they re-read the nodes they care about after every signal. Because a watch fires once
/// when it is registered (XS05), a reader that evaluates, then waits, then evaluates again never misses a
/// change made after its first read.
/// </summary>
/// <remarks>No lock: the channel is the only shared state; one reader (the owner's loop).</remarks>
internal sealed class XenbusWatchSet : IAsyncDisposable
{
    /// <summary>Kind bit of an ordinary node watch.</summary>
    public const int Changed = 1;

    /// <summary>Kind bit of the <c>@releaseDomain</c> watch.</summary>
    public const int Released = 2;

    private static long s_nextToken;

    private readonly XenstoreClient _client;
    private readonly Channel<Signal> _signals = Channel.CreateUnbounded<Signal>(new UnboundedChannelOptions { SingleReader = true });
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _pumps = [];

    public XenbusWatchSet(XenstoreClient client) => _client = client;

    /// <summary>Starts watching <paramref name="path"/>. A required watch that fails (refused, the connection
    /// broke) makes <see cref="WaitAsync"/> throw its exception; an optional one that the daemon refuses is
    /// dropped quietly (an unprivileged domain may not watch <c>@releaseDomain</c>).</summary>
    public void Add(string path, int kind, bool required)
    {
        string token = "xenshare-xenbus-" + Interlocked.Increment(ref s_nextToken).ToString(CultureInfo.InvariantCulture);
        _pumps.Add(PumpAsync(path, token, kind, required));
    }

    private async Task PumpAsync(string path, string token, int kind, bool required)
    {
        try
        {
            await foreach (var _ in _client.WatchAsync(path, token, _stop.Token).ConfigureAwait(false))
                _signals.Writer.TryWrite(new Signal(kind, null));
            _signals.Writer.TryWrite(new Signal(0, new IOException($"the xenstore watch of {path} ended")));
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
            // Disposed: the enumerator unregistered the watch.
        }
        catch (XenstoreException) when (!required)
        {
            // Optional and refused by the daemon.
        }
        catch (Exception e)
        {
            _signals.Writer.TryWrite(new Signal(0, e));
        }
    }

    /// <summary>Waits until at least one watch fired, then takes every pending signal.</summary>
    /// <returns>The kinds that fired, or-ed.</returns>
    public async ValueTask<int> WaitAsync(CancellationToken cancellationToken)
    {
        int kinds = 0;
        while (kinds == 0)
        {
            await _signals.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false);
            while (_signals.Reader.TryRead(out var signal))
            {
                if (signal.Failure is not null) ExceptionDispatchInfo.Throw(signal.Failure);
                kinds |= signal.Kind;
            }
        }
        return kinds;
    }

    /// <summary>Stops every watch (each unregisters itself) and waits for them.</summary>
    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await Task.WhenAll(_pumps).ConfigureAwait(false);
        _stop.Dispose();
    }

    private readonly record struct Signal(int Kind, Exception? Failure);
}
