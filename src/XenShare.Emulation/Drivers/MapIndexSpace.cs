namespace XenShare.Emulation.Drivers;

/// <summary>
/// The page-index space of one gntdev file: maps placed first fit as Linux does it (the lowest hole that
/// is strictly longer than the map, or the end), found by index in O(1) and by a contained offset in O(log n). Free ranges are kept merged, so
/// with maps packed at the front a new map is placed in O(1) instead of walking every map as Linux's list
/// does (P6). Not locked: the owning file's lock guards it.
/// </summary>
internal sealed class MapIndexSpace
{
    private readonly Dictionary<int, GrantMap> _byIndex = new();
    private readonly SortedSet<int> _starts = new();
    private readonly SortedSet<(int Start, int Count)> _free = new() { (0, int.MaxValue) };

    public int Count => _byIndex.Count;

    /// <summary>Places the map at the lowest free range of its size and records its index.</summary>
    public void Add(GrantMap map)
    {
        foreach (var gap in _free)
        {
            // GD01 as Linux's gntdev_add_map places maps: a hole between maps is taken only when
            // index + count < next map's index, i.e. the hole is strictly longer than the map (a hole of
            // exactly the map's size is skipped; real Linux 6.1 shows this in the conformance run).
            // The trailing range (up to int.MaxValue) is always usable.
            bool trailing = gap.Start + gap.Count == int.MaxValue;
            if (trailing ? gap.Count < map.Count : gap.Count <= map.Count) continue;
            _free.Remove(gap);
            if (gap.Count > map.Count) _free.Add((gap.Start + map.Count, gap.Count - map.Count));
            map.Index = gap.Start;
            _byIndex.Add(map.Index, map);
            _starts.Add(map.Index);
            return;
        }
        throw new InvalidOperationException("gntdev index space exhausted");
    }

    /// <summary>Removes a map and merges its range back into the free ranges.</summary>
    public bool Remove(GrantMap map)
    {
        if (!_byIndex.TryGetValue(map.Index, out var m) || m != map) return false;
        _byIndex.Remove(map.Index);
        _starts.Remove(map.Index);
        int start = map.Index, count = map.Count;
        // Merge with the free range just before and just after.
        var before = _free.GetViewBetween((int.MinValue, int.MinValue), (start, int.MinValue));
        if (before.Count > 0 && before.Max.Start + before.Max.Count == start)
        {
            var b = before.Max;
            _free.Remove(b);
            start = b.Start;
            count += b.Count;
        }
        var after = _free.GetViewBetween((start + count, int.MinValue), (start + count, int.MaxValue));
        if (after.Count > 0)
        {
            var a = after.Min;
            _free.Remove(a);
            count += a.Count;   // the trailing range ends exactly at int.MaxValue, so no overflow
        }
        _free.Add((start, count));
        return true;
    }

    /// <summary>The map at <paramref name="index"/> (and of <paramref name="count"/> pages unless 0).</summary>
    public GrantMap? Find(int index, int count)
    {
        if (!_byIndex.TryGetValue(index, out var m)) return null;
        return count == 0 || m.Count == count ? m : null;
    }

    /// <summary>The map whose page range contains <paramref name="page"/>.</summary>
    public GrantMap? FindContaining(long page)
    {
        if (page < 0 || page > int.MaxValue) return null;
        var view = _starts.GetViewBetween(int.MinValue, (int)page);
        if (view.Count == 0) return null;
        var m = _byIndex[view.Max];
        return page < (long)m.Index + m.Count ? m : null;
    }

    /// <summary>All maps (a copy).</summary>
    public List<GrantMap> All() => new(_byIndex.Values);

    public void Clear()
    {
        _byIndex.Clear();
        _starts.Clear();
        _free.Clear();
        _free.Add((0, int.MaxValue));
    }
}
