namespace XenShare.Tests.Native;

/// <summary>
/// The native tests close fd numbers and inspect /proc/self/fd; run alone so that no other test opens
/// a file that reuses a number this collection has just closed.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class NativeSyscallsGroup
{
    public const string Name = "Native syscalls";
}
