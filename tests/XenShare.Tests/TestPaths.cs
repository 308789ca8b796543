namespace XenShare.Tests;

/// <summary>Paths of the clone the tests run from (for the scripts under tools/).</summary>
internal static class TestPaths
{
    /// <summary>The clone's root: the first folder above the test assembly that holds XenShare.slnx.</summary>
    public static string RepositoryRoot()
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, "XenShare.slnx"))) return d.FullName;
        throw new InvalidOperationException("XenShare.slnx not found above " + AppContext.BaseDirectory);
    }
}
