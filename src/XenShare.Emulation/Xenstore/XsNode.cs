using System.Collections.Immutable;

namespace XenShare.Emulation.Xenstore;

/// <summary>One permission entry of a node: an access letter (n none, r read, w write, b both) and a
/// domain. The first entry of a node's list names its owner and the access of every domain not listed.</summary>
internal readonly record struct XsPerm(char Access, ushort Domain)
{
    public bool CanRead => Access is 'r' or 'b';
    public bool CanWrite => Access is 'w' or 'b';

    public override string ToString() => Access + Domain.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Parses "r5"; false for anything else.</summary>
    public static bool TryParse(ReadOnlySpan<char> s, out XsPerm perm)
    {
        perm = default;
        if (s.Length < 2 || s[0] is not ('n' or 'r' or 'w' or 'b')) return false;
        if (!ushort.TryParse(s[1..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out ushort d)) return false;
        perm = new XsPerm(s[0], d);
        return true;
    }
}

/// <summary>
/// A node of the store. Nodes are immutable: a change copies the path from the root to the node (the
/// rest is shared), so a transaction's snapshot is just the root it started from (XS06), and a reader
/// never sees half a change. <see cref="Generation"/> is the store-wide change count at this node's last
/// change (its value, its permissions, or the set of its children).
/// </summary>
internal sealed class XsNode
{
    public static readonly ImmutableSortedDictionary<string, XsNode> NoChildren = ImmutableSortedDictionary.Create<string, XsNode>(StringComparer.Ordinal);

    public XsNode(byte[] value, ImmutableArray<XsPerm> perms, ImmutableSortedDictionary<string, XsNode> children, long generation)
    {
        Value = value;
        Perms = perms;
        Children = children;
        Generation = generation;
    }

    public byte[] Value { get; }
    public ImmutableArray<XsPerm> Perms { get; }
    public ImmutableSortedDictionary<string, XsNode> Children { get; }
    public long Generation { get; }

    public ushort Owner => Perms[0].Domain;

    /// <summary>What <paramref name="domain"/> may do here: dom0 and the owner everything, a listed domain
    /// its entry, anyone else the first entry's access (XS04).</summary>
    public XsPerm AccessOf(ushort domain) => AccessOf(Perms, domain);

    /// <summary>What <paramref name="domain"/> may do on a node with <paramref name="perms"/> (see
    /// <see cref="AccessOf(ushort)"/>).</summary>
    public static XsPerm AccessOf(ImmutableArray<XsPerm> perms, ushort domain)
    {
        if (domain == 0 || domain == perms[0].Domain) return new XsPerm('b', domain);
        for (int i = 1; i < perms.Length; i++)
            if (perms[i].Domain == domain) return perms[i];
        return new XsPerm(perms[0].Access, domain);
    }

    /// <summary>Nodes in this subtree (itself included), per owner.</summary>
    public void CountOwners(Dictionary<ushort, int> into)
    {
        into[Owner] = into.GetValueOrDefault(Owner) + 1;
        foreach (var c in Children.Values) c.CountOwners(into);
    }
}
