namespace XenShare.Api;

/// <summary>The one place where raw seam results (&gt;= 0 or -errno) become exceptions (D05).</summary>
public static class ErrnoMapper
{
    /// <summary>Returns <paramref name="result"/> when it is &gt;= 0; otherwise throws a
    /// <see cref="XenShareException"/> carrying <c>-result</c>.</summary>
    public static int Check(int result, string operation)
    {
        if (result < 0) throw new XenShareException(-result, operation);
        return result;
    }

    /// <summary>64-bit variant of <see cref="Check(int, string)"/>.</summary>
    public static long Check(long result, string operation)
    {
        if (result < 0) throw new XenShareException((int)-result, operation);
        return result;
    }
}
