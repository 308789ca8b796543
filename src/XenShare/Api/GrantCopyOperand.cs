namespace XenShare.Api;

/// <summary>One side of a grant copy: a local address in the guest process or a foreign grant.</summary>
public readonly record struct GrantCopyOperand
{
    /// <summary>True for a foreign grant, false for a local address.</summary>
    public bool IsForeign { get; private init; }

    /// <summary>Local address (when not foreign).</summary>
    public long Address { get; private init; }

    /// <summary>Granting domain (when foreign).</summary>
    public DomainId Domain { get; private init; }

    /// <summary>Grant reference (when foreign).</summary>
    public GrantRef Ref { get; private init; }

    /// <summary>Offset in the granted page (when foreign).</summary>
    public ushort Offset { get; private init; }

    /// <summary>A local address (for example inside a <see cref="ProcessBuffer"/> or a mapping).</summary>
    public static GrantCopyOperand Local(long address) => new() { Address = address };

    /// <summary>A foreign grant.</summary>
    public static GrantCopyOperand Foreign(DomainId domain, GrantRef gref, ushort offset = 0) =>
        new() { IsForeign = true, Domain = domain, Ref = gref, Offset = offset };
}
