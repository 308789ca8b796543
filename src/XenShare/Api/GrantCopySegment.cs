namespace XenShare.Api;

/// <summary>One grant-copy segment (at least one side foreign; a foreign side stays within its page).</summary>
/// <param name="Source">Where to read.</param>
/// <param name="Dest">Where to write.</param>
/// <param name="Length">Bytes.</param>
public readonly record struct GrantCopySegment(GrantCopyOperand Source, GrantCopyOperand Dest, ushort Length);
