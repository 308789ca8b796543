using System.Globalization;
using System.Runtime.CompilerServices;
using XenShare.Xenstore;

namespace XenShare.Xenbus;

/// <summary>What both ends of a device share: the XB01 paths, reading and writing the decimal
/// <c>state</c> node, and a watched state as a stream.</summary>
internal static class XenbusNodes
{
    public const string StateNode = "state";

    public static string Home(DomainId domain) => "/local/domain/" + domain.Value.ToString(CultureInfo.InvariantCulture);

    public static string FrontendPath(DomainId frontend, string type, int id) =>
        $"{Home(frontend)}/device/{type}/{id.ToString(CultureInfo.InvariantCulture)}";

    public static string BackendPath(DomainId backend, DomainId frontend, string type, int id) =>
        $"{Home(backend)}/backend/{type}/{frontend.Value.ToString(CultureInfo.InvariantCulture)}/{id.ToString(CultureInfo.InvariantCulture)}";

    public static void ValidateDevice(string type, int id)
    {
        ArgumentException.ThrowIfNullOrEmpty(type);
        if (type.Contains('/', StringComparison.Ordinal) || type.Contains('\0', StringComparison.Ordinal) || type.StartsWith('@'))
            throw new ArgumentException("a device type is one xenstore path element", nameof(type));
        ArgumentOutOfRangeException.ThrowIfNegative(id);
    }

    /// <summary>The state a node's text names. A missing node, text that is not a decimal number, or a
    /// number outside the enum read as Unknown, as Linux's xenbus reads them: a hostile peer's garbage is
    /// never an exception.</summary>
    public static XenbusState Parse(string? text)
    {
        if (text is null) return XenbusState.Unknown;
        ReadOnlySpan<char> span = text.AsSpan().TrimEnd('\0').Trim();
        if (!int.TryParse(span, NumberStyles.None, CultureInfo.InvariantCulture, out int value)) return XenbusState.Unknown;
        return value is >= (int)XenbusState.Unknown and <= (int)XenbusState.Reconfigured ? (XenbusState)value : XenbusState.Unknown;
    }

    public static string Format(XenbusState state) => ((int)state).ToString(CultureInfo.InvariantCulture);

    /// <summary>Reads the state node below <paramref name="directory"/>: null when the node is missing.</summary>
    public static async Task<XenbusState?> TryReadStateAsync(XenstoreClient client, string directory, CancellationToken cancellationToken)
    {
        string? text = await client.TryReadStringAsync(directory + "/" + StateNode, cancellationToken).ConfigureAwait(false);
        return text is null ? null : Parse(text);
    }

    /// <summary>Writes <paramref name="state"/> into the state node below <paramref name="directory"/> only if
    /// that node still exists, in one transaction, so that a directory the toolstack (or a dying domain's
    /// cleanup) removed is never created again by a late write. False when the node was gone.</summary>
    public static Task<bool> SwitchAsync(XenstoreClient client, string directory, XenbusState state, CancellationToken cancellationToken)
    {
        string path = directory + "/" + StateNode, value = Format(state);
        return client.TransactionAsync(async (tx, ct) =>
        {
            if (await tx.TryReadStringAsync(path, ct).ConfigureAwait(false) is null) return false;
            await tx.WriteAsync(path, value, ct).ConfigureAwait(false);
            return true;
        }, cancellationToken);
    }

    /// <summary>The state node below <paramref name="directory"/> as a stream: its value right after the
    /// watch is registered, then every change to a different value (a missing node is Unknown).</summary>
    public static async IAsyncEnumerable<XenbusState> WatchStateAsync(
        XenstoreClient client, string directory, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var watches = new XenbusWatchSet(client);
        watches.Add(directory + "/" + StateNode, XenbusWatchSet.Changed, required: true);
        XenbusState? last = null;
        while (true)
        {
            await watches.WaitAsync(cancellationToken).ConfigureAwait(false);
            XenbusState state = (await TryReadStateAsync(client, directory, cancellationToken).ConfigureAwait(false)) ?? XenbusState.Unknown;
            if (state == last) continue;
            last = state;
            yield return state;
        }
    }

    public static async Task<XenbusState> WaitForStateAsync(
        XenstoreClient client, string directory, Func<XenbusState, bool> predicate, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        await foreach (var state in WatchStateAsync(client, directory, cancellationToken).ConfigureAwait(false))
            if (predicate(state)) return state;
        throw new InvalidOperationException("the state watch ended"); // WatchStateAsync never ends by itself
    }
}
