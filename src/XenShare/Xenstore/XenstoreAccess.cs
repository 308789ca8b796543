namespace XenShare.Xenstore;

/// <summary>The access a xenstore permission entry grants (XS04). A plain <see cref="FlagsAttribute"/> enum:
/// <see cref="Both"/> is <see cref="Read"/> | <see cref="Write"/>, matching the wire letter <c>b</c>.</summary>
[Flags]
public enum XenstoreAccess
{
    /// <summary>No access (wire letter <c>n</c>).</summary>
    None = 0,

    /// <summary>Read access (wire letter <c>r</c>).</summary>
    Read = 1,

    /// <summary>Write access (wire letter <c>w</c>).</summary>
    Write = 2,

    /// <summary>Read and write access (wire letter <c>b</c>).</summary>
    Both = Read | Write,
}
