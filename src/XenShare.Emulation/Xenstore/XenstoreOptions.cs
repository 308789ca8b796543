namespace XenShare.Emulation.Xenstore;

/// <summary>Quotas and limits of the emulated xenstore daemon (XS04, XS06), with C xenstored's defaults.
/// dom0 (privileged) is not subject to the per-domain quotas.</summary>
public sealed record XenstoreOptions
{
    /// <summary>Nodes a domain may own (xenstored's quota-nb-entry-per-domain, default 1000); beyond it
    /// a create fails with ENOSPC.</summary>
    public int NodesPerDomain { get; init; } = 1000;

    /// <summary>Largest value a domain may write (quota-max-entry-size, default 2048 bytes); larger is ENOSPC.</summary>
    public int MaxValueSize { get; init; } = 2048;

    /// <summary>Watches per connection of a domain (quota-nb-watch-per-domain, default 128); beyond it
    /// WATCH fails with E2BIG.</summary>
    public int WatchesPerConnection { get; init; } = 128;

    /// <summary>Open transactions per connection of a domain (quota-max-transaction, default 10); beyond
    /// it TRANSACTION_START fails with ENOSPC.</summary>
    public int TransactionsPerConnection { get; init; } = 10;
}
