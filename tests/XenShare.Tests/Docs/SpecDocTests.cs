using System.Text.RegularExpressions;

namespace XenShare.Tests.Docs;

/// <summary>
/// docs/spec.md defines every spec item ID (<c>EX03</c>, <c>XS05</c>, <c>D05</c>, ...) in the project's own words,
/// so that the XML docs, the tests and the other documents that cite an ID can be read without the
/// specification outside the repository. These tests keep it that way.
/// </summary>
public sealed partial class SpecDocTests
{
    /// <summary>An item line of docs/spec.md: <c>- **EX03** definition</c>.</summary>
    [GeneratedRegex(@"^- \*\*(?<id>[A-Z]{1,2}[0-9]{2}[a-z]?)\*\*(?<def>.*)$", RegexOptions.CultureInvariant)]
    private static partial Regex ItemLine();

    /// <summary>An item line of the specification outside the repository: <c>- EX03 text</c>.</summary>
    [GeneratedRegex(@"^- (?<id>[A-Z]{1,2}[0-9]{2}[a-z]?) ", RegexOptions.CultureInvariant)]
    private static partial Regex SharedItemLine();

    [GeneratedRegex(@"^[A-Z]+", RegexOptions.CultureInvariant)]
    private static partial Regex Prefix();

    private sealed record Item(string Id, string Definition, int Line);

    private static string SpecPath => Path.Combine(TestPaths.RepositoryRoot(), "docs", "spec.md");

    /// <summary>The items of docs/spec.md, in order; malformed item lines are returned as problems.</summary>
    private static (List<Item> Items, List<string> Problems) ParseSpec()
    {
        var items = new List<Item>();
        var problems = new List<string>();
        string[] lines = File.ReadAllLines(SpecPath);
        for (int i = 0; i < lines.Length; i++)
        {
            if (!lines[i].StartsWith("- **", StringComparison.Ordinal)) continue;
            Match m = ItemLine().Match(lines[i]);
            if (!m.Success)
            {
                problems.Add($"docs/spec.md:{i + 1}: an item line that is not '- **ID** definition': {lines[i]}");
                continue;
            }
            items.Add(new Item(m.Groups["id"].Value, m.Groups["def"].Value.Trim(), i + 1));
        }
        return (items, problems);
    }

    private static HashSet<string> DefinedIds() => ParseSpec().Items.Select(it => it.Id).ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// An ID-like token with one of the spec's prefixes: the prefix, two digits and an optional lower-case
    /// letter, not glued to other letters or digits (so <c>0xDB01</c>, <c>P12</c>, <c>ENOTTY</c> or <c>XR24</c>
    /// are not citations) but allowed next to '_' (test names such as <c>GD03_*</c> are citations).
    /// </summary>
    private static Regex CitationPattern(IEnumerable<string> ids)
    {
        var prefixes = ids.Select(id => Prefix().Match(id).Value).Distinct().OrderByDescending(p => p.Length);
        return new Regex(@"(?<![A-Za-z0-9])(?:" + string.Join('|', prefixes) + @")[0-9]{2}[a-z]?(?![A-Za-z0-9])",
            RegexOptions.CultureInvariant);
    }

    /// <summary>The cited tokens of one line; a token between double quotes (a DRM fourcc such as "RG16") is not a citation.</summary>
    private static IEnumerable<string> Citations(Regex pattern, string line)
    {
        foreach (Match m in pattern.Matches(line))
        {
            int end = m.Index + m.Length;
            bool quoted = m.Index > 0 && end < line.Length && line[m.Index - 1] == '"' && line[end] == '"';
            if (!quoted) yield return m.Value;
        }
    }

    private static string Relative(string root, string path) => Path.GetRelativePath(root, path).Replace('\\', '/');

    private static bool IsBuildOutput(string root, string path) =>
        Relative(root, path).Split('/').Any(part => part is "bin" or "obj");

    [Fact]
    public void SpecDoc_EveryItemLineIsWellFormedAndHasADefinition()
    {
        var (items, problems) = ParseSpec();
        Assert.True(items.Count > 0, "docs/spec.md defines no item ('- **ID** definition' lines)");
        foreach (Item it in items)
        {
            int words = it.Definition.Split(' ', StringSplitOptions.RemoveEmptyEntries).Length;
            if (words < 5)
                problems.Add($"docs/spec.md:{it.Line}: {it.Id} has no definition (or only '{it.Definition}')");
        }
        foreach (var dup in items.GroupBy(it => it.Id).Where(g => g.Count() > 1))
            problems.Add($"{dup.Key} is defined {dup.Count()} times (docs/spec.md lines {string.Join(", ", dup.Select(it => it.Line))})");
        Assert.True(problems.Count == 0, string.Join(Environment.NewLine, problems));
    }

    [Fact]
    public void SpecDoc_EveryIdCitedInXmlDocsAndDocumentsIsDefined()
    {
        string root = TestPaths.RepositoryRoot();
        HashSet<string> defined = DefinedIds();
        Regex pattern = CitationPattern(defined);
        var undefined = new List<string>();
        int cited = 0;

        void Scan(string path, Func<string, bool> lineFilter)
        {
            string[] lines = File.ReadAllLines(path);
            for (int i = 0; i < lines.Length; i++)
            {
                if (!lineFilter(lines[i])) continue;
                foreach (string id in Citations(pattern, lines[i]))
                {
                    cited++;
                    if (!defined.Contains(id)) undefined.Add($"{Relative(root, path)}:{i + 1}: {id}");
                }
            }
        }

        foreach (string cs in Directory.EnumerateFiles(Path.Combine(root, "src"), "*.cs", SearchOption.AllDirectories)
                     .Where(p => !IsBuildOutput(root, p)).Order(StringComparer.Ordinal))
            Scan(cs, line => line.TrimStart().StartsWith("///", StringComparison.Ordinal));
        foreach (string md in Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md").Order(StringComparer.Ordinal)
                     .Append(Path.Combine(root, "README.md")))
            Scan(md, _ => true);

        Assert.True(cited > 0, "no spec ID cited anywhere: the scan is broken");
        Assert.True(undefined.Count == 0,
            "spec IDs cited but not defined in docs/spec.md:" + Environment.NewLine + string.Join(Environment.NewLine, undefined));
    }

    [Fact]
    public void SpecDoc_EveryDefinedIdIsNamedByATest()
    {
        string root = TestPaths.RepositoryRoot();
        HashSet<string> defined = DefinedIds();
        Regex pattern = CitationPattern(defined);
        var named = new HashSet<string>(StringComparer.Ordinal);
        foreach (string cs in Directory.EnumerateFiles(Path.Combine(root, "tests"), "*.cs", SearchOption.AllDirectories)
                     .Where(p => !IsBuildOutput(root, p)))
            foreach (string line in File.ReadLines(cs))
                named.UnionWith(Citations(pattern, line));
        var untested = defined.Where(id => !named.Contains(id)).Order(StringComparer.Ordinal).ToList();
        Assert.True(untested.Count == 0, "spec items no test under tests/ names: " + string.Join(", ", untested));
    }

    [SharedSpecFact]
    public void SpecDoc_DefinesEveryItemOfTheSharedSpecification()
    {
        string dir = SharedSpecFactAttribute.Folder()!;
        var expected = new List<string>();
        foreach (string md in Directory.EnumerateFiles(dir, "*.md").Order(StringComparer.Ordinal))
            foreach (string line in File.ReadLines(md))
            {
                Match m = SharedItemLine().Match(line);
                if (m.Success) expected.Add(m.Groups["id"].Value);
            }
        Assert.True(expected.Count > 0, $"no '- ID ' item lines found in {dir}: has its format changed?");
        HashSet<string> defined = DefinedIds();
        var missing = expected.Where(id => !defined.Contains(id)).ToList();
        var extra = defined.Where(id => !expected.Contains(id)).Order(StringComparer.Ordinal).ToList();
        Assert.True(missing.Count == 0, "items of the shared specification missing from docs/spec.md: " + string.Join(", ", missing));
        Assert.True(extra.Count == 0, "docs/spec.md defines IDs the shared specification does not have: " + string.Join(", ", extra));
    }
}

/// <summary>
/// A fact that runs only where the specification the repository was written from is present, next to the
/// clone as <c>../shared/spec</c>; a clean clone (CI) does not have it, and the fact is skipped there.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class SharedSpecFactAttribute : FactAttribute
{
    public SharedSpecFactAttribute()
    {
        if (Folder() is null)
            Skip = "the shared specification (../shared/spec next to the clone) is not present: nothing to compare docs/spec.md with";
    }

    /// <summary>The shared specification's folder, or null when it is not there.</summary>
    public static string? Folder()
    {
        string dir;
        try
        {
            dir = Path.GetFullPath(Path.Combine(TestPaths.RepositoryRoot(), "..", "shared", "spec"));
        }
        catch (InvalidOperationException)
        {
            return null;
        }
        return Directory.Exists(dir) ? dir : null;
    }
}
