namespace XenShare.Api;

/// <summary>What happens when a mapping's last user goes (UNMAP_NOTIFY_*).</summary>
[Flags]
public enum UnmapNotify : uint
{
    /// <summary>Nothing.</summary>
    None = 0,
    /// <summary>Zero one byte of the shared page (UNMAP_NOTIFY_CLEAR_BYTE).</summary>
    ClearByte = 1,
    /// <summary>Send an event on a port (UNMAP_NOTIFY_SEND_EVENT).</summary>
    SendEvent = 2,
}
