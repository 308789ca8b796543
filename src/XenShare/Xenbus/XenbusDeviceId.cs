namespace XenShare.Xenbus;

/// <summary>One device of a backend's directory: <c>backend/&lt;type&gt;/&lt;frontend&gt;/&lt;id&gt;</c> (XB01).</summary>
/// <param name="Frontend">The frontend's domain.</param>
/// <param name="Id">The device id.</param>
public readonly record struct XenbusDeviceId(DomainId Frontend, int Id);
