using XenShare.Abi;
using XenShare.Api;

namespace XenShare.Conformance;

/// <summary>The checks scenarios use; each failure throws <see cref="ConformanceException"/> with what
/// was expected and what happened.</summary>
public static class Check
{
    public static void True(bool condition, string what)
    {
        if (!condition) throw new ConformanceException(what);
    }

    public static void Equal<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
            throw new ConformanceException($"{what}: expected {expected}, got {actual}");
    }

    /// <summary>A raw seam result: 0 (or >= 0 with <paramref name="anyNonNegative"/>) or -errno.</summary>
    public static long Ok(long rc, string what, bool anyNonNegative = true)
    {
        if (rc < 0 || (!anyNonNegative && rc != 0))
            throw new ConformanceException($"{what}: expected success, got {Describe(rc)}");
        return rc;
    }

    /// <summary>A raw seam result must be -<paramref name="errno"/>.</summary>
    public static void Errno(int errno, long rc, string what)
    {
        if (rc != -errno)
        {
            throw new ConformanceException($"{what}: expected {Abi.Errno.Name(errno)}, got {Describe(rc)}");
        }
    }

    /// <summary>The typed call must throw <see cref="XenShareException"/> with <paramref name="errno"/>.</summary>
    public static void Throws(int errno, Action action, string what)
    {
        try
        {
            action();
        }
        catch (XenShareException e) when (e.Errno == errno)
        {
            return;
        }
        catch (XenShareException e)
        {
            throw new ConformanceException($"{what}: expected {Abi.Errno.Name(errno)}, got {Abi.Errno.Name(e.Errno)}");
        }
        throw new ConformanceException($"{what}: expected {Abi.Errno.Name(errno)}, got success");
    }

    public static string Describe(long rc) => rc < 0 ? Abi.Errno.Name((int)-rc) : rc.ToString(System.Globalization.CultureInfo.InvariantCulture);

}
