namespace XenShare.Api;

/// <summary>A local dma-buf granted to a foreign domain by gntdev. Dispose (or <see cref="Release"/>)
/// ends the grants; refs the peer still maps are reclaimed after the peer unmaps (EI09).</summary>
public sealed class ImportedDmaBuf : IDisposable
{
    private readonly GrantDevice _device;
    private readonly GrantRef[] _refs;
    private int _released;

    internal ImportedDmaBuf(GrantDevice device, int fdKey, GrantRef[] refs)
    {
        _device = device;
        FdKey = fdKey;
        _refs = refs;
    }

    /// <summary>The dma-buf fd number given at import (the release key).</summary>
    public int FdKey { get; }

    /// <summary>The grant refs, one per page, in order (a view without a copy).</summary>
    public GrantRefs Refs => new(_refs);

    /// <summary>IOCTL_GNTDEV_DMABUF_IMP_RELEASE. Nothing to do once the <see cref="GrantDevice"/> is disposed:
    /// closing gntdev released every import.</summary>
    public void Release()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0) return;
        if (_device.ImportRelease(FdKey) is int rc) ErrnoMapper.Check(rc, "IOCTL_GNTDEV_DMABUF_IMP_RELEASE");
    }

    /// <summary>Releases the import.</summary>
    public void Dispose() => Release();
}
