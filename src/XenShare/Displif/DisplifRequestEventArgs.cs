namespace XenShare.Displif;

/// <summary>A request the backend answered (<see cref="DisplifBackend.RequestServed"/>).</summary>
public sealed class DisplifRequestEventArgs : EventArgs
{
    /// <summary>Creates the arguments.</summary>
    /// <param name="connector">The connector whose ring carried the request.</param>
    /// <param name="id">The request's id (echoed in the response).</param>
    /// <param name="operation">The XENDISPL_OP_* code.</param>
    /// <param name="status">The status answered: 0 or a negative errno.</param>
    /// <param name="cookie">The first cookie of the request body (dbuf or fb cookie), 0 for others.</param>
    public DisplifRequestEventArgs(int connector, ushort id, byte operation, int status, ulong cookie)
    {
        Connector = connector;
        Id = id;
        Operation = operation;
        Status = status;
        Cookie = cookie;
    }

    /// <summary>The connector whose ring carried the request.</summary>
    public int Connector { get; }

    /// <summary>The request's id.</summary>
    public ushort Id { get; }

    /// <summary>The XENDISPL_OP_* code.</summary>
    public byte Operation { get; }

    /// <summary>The status answered: 0 or a negative errno.</summary>
    public int Status { get; }

    /// <summary>The request's first cookie: the dbuf cookie of DBUF_CREATE, DBUF_DESTROY and FB_ATTACH, the
    /// fb cookie of FB_DETACH, SET_CONFIG and PG_FLIP; 0 for other operations.</summary>
    public ulong Cookie { get; }
}
