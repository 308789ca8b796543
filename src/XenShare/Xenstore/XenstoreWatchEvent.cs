namespace XenShare.Xenstore;

/// <summary>One firing of a xenstore watch (XS05): the node that changed and the token the watch was
/// registered with.</summary>
/// <param name="Path">The path that changed (the watched path itself or a node below it).</param>
/// <param name="Token">The token given when the watch was registered.</param>
public readonly record struct XenstoreWatchEvent(string Path, string Token);
