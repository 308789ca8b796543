using System.Collections;

namespace XenShare.Api;

/// <summary>
/// The grant refs of a share or an import, one per page, in order: a read-only view over the typed API's own
/// array. It converts to <see cref="ReadOnlySpan{T}"/> and <see cref="ReadOnlyMemory{T}"/> without a copy, so
/// <c>device.Map(peer, pages.Refs)</c> passes the refs straight on.
/// </summary>
public readonly struct GrantRefs : IReadOnlyList<GrantRef>, IEquatable<GrantRefs>
{
    private readonly GrantRef[]? _refs;

    internal GrantRefs(GrantRef[] refs) => _refs = refs;

    /// <summary>The refs as a span.</summary>
    public ReadOnlySpan<GrantRef> Span => _refs;

    /// <summary>The refs as memory (for storing or passing to asynchronous code).</summary>
    public ReadOnlyMemory<GrantRef> Memory => _refs;

    /// <summary>Number of refs.</summary>
    public int Count => _refs?.Length ?? 0;

    /// <summary>Number of refs.</summary>
    public int Length => Count;

    /// <summary>The ref of page <paramref name="index"/>.</summary>
    public GrantRef this[int index] => (_refs ?? [])[index];

    /// <summary>The refs as a span.</summary>
    public static implicit operator ReadOnlySpan<GrantRef>(GrantRefs refs) => refs.Span;

    /// <summary>The refs as memory.</summary>
    public static implicit operator ReadOnlyMemory<GrantRef>(GrantRefs refs) => refs.Memory;

    /// <summary>The refs as a span.</summary>
    public ReadOnlySpan<GrantRef> ToReadOnlySpan() => Span;

    /// <summary>The refs as memory.</summary>
    public ReadOnlyMemory<GrantRef> ToReadOnlyMemory() => Memory;

    /// <summary>A span enumerator (no allocation).</summary>
    public ReadOnlySpan<GrantRef>.Enumerator GetEnumerator() => Span.GetEnumerator();

    IEnumerator<GrantRef> IEnumerable<GrantRef>.GetEnumerator() => ((IEnumerable<GrantRef>)(_refs ?? [])).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => (_refs ?? []).GetEnumerator();

    /// <summary>Whether both views are over the same array.</summary>
    public bool Equals(GrantRefs other) => ReferenceEquals(_refs, other._refs);

    /// <inheritdoc/>
    public override bool Equals(object? obj) => obj is GrantRefs other && Equals(other);

    /// <inheritdoc/>
    public override int GetHashCode() => _refs?.GetHashCode() ?? 0;

    /// <summary>Whether both views are over the same array.</summary>
    public static bool operator ==(GrantRefs left, GrantRefs right) => left.Equals(right);

    /// <summary>Whether the views are over different arrays.</summary>
    public static bool operator !=(GrantRefs left, GrantRefs right) => !left.Equals(right);
}
