namespace XenShare.Api;

/// <summary>The one place where raw seam results (&gt;= 0 or -errno) become exceptions (D05).</summary>
public static class ErrnoMapper
{
    /// <summary>Returns <paramref name="result"/> when it is &gt;= 0; otherwise throws a
    /// <see cref="XenShareException"/> carrying <c>-result</c>.</summary>
    public static int Check(int result, string operation)
    {
        if (result < 0) throw ToException(result, operation);
        return result;
    }

    /// <summary>64-bit variant of <see cref="Check(int, string)"/>.</summary>
    public static long Check(long result, string operation)
    {
        if (result < 0) throw ToException(result, operation);
        return result;
    }

    /// <summary>The exception for a failed result (-errno, carried as <c>-result</c>), for a caller that
    /// must clean up before it throws, or that refuses an argument with an errno itself
    /// (<c>throw ErrnoMapper.ToException(-Errno.EINVAL, ...)</c>).</summary>
    internal static XenShareException ToException(long result, string operation) => new((int)-result, operation);
}
