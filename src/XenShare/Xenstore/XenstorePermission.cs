using System.Diagnostics.CodeAnalysis;
using System.Globalization;

namespace XenShare.Xenstore;

/// <summary>One entry of a node's permission list (XS04). On the wire an entry is a letter (<c>n</c> none,
/// <c>r</c> read, <c>w</c> write, <c>b</c> both) followed by a decimal domain id, e.g. <c>r5</c>. In a
/// list the first entry names the owner (who always has full access) and the access of every domain not
/// listed; later entries grant access to individual domains.</summary>
/// <param name="Domain">The domain the entry is about.</param>
/// <param name="Access">The access it grants.</param>
[SuppressMessage("Naming", "CA1711:Identifiers should not have incorrect suffix",
    Justification = "Xen's name for a permission-list entry; this is not a code-access-security permission.")]
public readonly record struct XenstorePermission(DomainId Domain, XenstoreAccess Access)
{
    /// <summary>The wire letter of <paramref name="access"/>.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The value is not one of the four defined ones.</exception>
    public static char LetterOf(XenstoreAccess access) => access switch
    {
        XenstoreAccess.None => 'n',
        XenstoreAccess.Read => 'r',
        XenstoreAccess.Write => 'w',
        XenstoreAccess.Both => 'b',
        _ => throw new ArgumentOutOfRangeException(nameof(access), access, "not a xenstore access value"),
    };

    /// <summary>Parses the wire form (<c>b0</c>, <c>r12</c>).</summary>
    /// <exception cref="FormatException">The text is not a letter n/r/w/b followed by a domain id.</exception>
    public static XenstorePermission Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var permission)
            ? permission
            : throw new FormatException($"'{text}' is not a xenstore permission (a letter n/r/w/b and a domain id)");
    }

    /// <summary>Parses the wire form; false when <paramref name="text"/> is not one.</summary>
    public static bool TryParse([NotNullWhen(true)] string? text, out XenstorePermission permission)
    {
        permission = default;
        if (text is null || text.Length < 2) return false;
        XenstoreAccess access;
        switch (text[0])
        {
            case 'n': access = XenstoreAccess.None; break;
            case 'r': access = XenstoreAccess.Read; break;
            case 'w': access = XenstoreAccess.Write; break;
            case 'b': access = XenstoreAccess.Both; break;
            default: return false;
        }
        // Digits only: ushort.TryParse alone would also accept a sign or surrounding white space.
        foreach (char c in text.AsSpan(1))
            if (c is < '0' or > '9') return false;
        if (!ushort.TryParse(text.AsSpan(1), NumberStyles.None, CultureInfo.InvariantCulture, out ushort domid)) return false;
        permission = new XenstorePermission(new DomainId(domid), access);
        return true;
    }

    /// <summary>The wire form: the access letter followed by the decimal domain id.</summary>
    public override string ToString() => LetterOf(Access) + Domain.Value.ToString(CultureInfo.InvariantCulture);
}
