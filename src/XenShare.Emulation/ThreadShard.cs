namespace XenShare.Emulation;

/// <summary>Gives each thread a home shard for striped structures (maptrack free lists, page allocator
/// stripes): threads are numbered in the order they first ask, so any two threads land on different
/// shards as long as there are enough shards (managed thread ids modulo the shard count often collide).</summary>
internal static class ThreadShard
{
    private static int s_next = -1;

    [ThreadStatic]
    private static int t_index;

    [ThreadStatic]
    private static bool t_assigned;

    /// <summary>This thread's home among <paramref name="shards"/> shards.</summary>
    public static int Home(int shards)
    {
        if (!t_assigned)
        {
            t_index = Interlocked.Increment(ref s_next) & int.MaxValue;
            t_assigned = true;
        }
        return t_index % shards;
    }
}
