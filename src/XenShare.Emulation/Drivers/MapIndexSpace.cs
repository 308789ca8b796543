namespace XenShare.Emulation.Drivers;

/// <summary>
/// The page-index space of one gntdev file: maps placed first fit (the lowest free range that is long
/// enough), found by index in O(1) and by a contained page with a binary search. Free ranges are kept
/// merged in a sorted list, so with maps packed at the front a new map is placed in O(1) instead of
/// walking every map as Linux's list does (P6), and nothing is allocated in steady state (P7).
/// Not locked itself: every access holds <see cref="SyncRoot"/>, the file's map-list lock, which also
/// guards the bookkeeping of each <see cref="GrantMap"/> on it.
/// </summary>
internal sealed class MapIndexSpace
{
    /// <summary>The file's map-list lock.</summary>
    public object SyncRoot { get; } = new();

    private readonly Dictionary<int, GrantMap> _byIndex = new();
    private readonly List<int> _starts = new();                                   // sorted map starts
    private readonly List<(int Start, int Count)> _free = new() { (0, int.MaxValue) }; // sorted, merged

    public int Count => _byIndex.Count;

    /// <summary>Places the map at the lowest free range of its size; returns the index it is recorded at.</summary>
    public int Add(GrantMap map)
    {
        for (int i = 0; i < _free.Count; i++)
        {
            var gap = _free[i];
            // GD01 as Linux's gntdev_add_map places maps: a hole between maps is taken only when
            // index + count < next map's index, i.e. the hole is strictly longer than the map (a hole of
            // exactly the map's size is skipped; real Linux 6.1 shows this in the conformance run).
            // The trailing range (up to int.MaxValue) is always usable.
            bool trailing = gap.Start + gap.Count == int.MaxValue;
            if (trailing ? gap.Count < map.Count : gap.Count <= map.Count) continue;
            if (gap.Count == map.Count) _free.RemoveAt(i);
            else _free[i] = (gap.Start + map.Count, gap.Count - map.Count);
            _byIndex.Add(gap.Start, map);
            int at = _starts.BinarySearch(gap.Start);
            _starts.Insert(~at, gap.Start);
            return gap.Start;
        }
        throw new InvalidOperationException("gntdev index space exhausted");
    }

    /// <summary>Removes a map and merges its range back into the free ranges.</summary>
    public bool Remove(GrantMap map)
    {
        if (!_byIndex.TryGetValue(map.Index, out var m) || m != map) return false;
        _byIndex.Remove(map.Index);
        _starts.RemoveAt(_starts.BinarySearch(map.Index));
        int start = map.Index, count = map.Count;
        int i = LowerBound(start);                       // first free range starting after us
        if (i > 0 && _free[i - 1].Start + _free[i - 1].Count == start)
        {
            i--;
            start = _free[i].Start;
            count += _free[i].Count;
            _free.RemoveAt(i);
        }
        if (i < _free.Count && _free[i].Start == start + count)
        {
            count += _free[i].Count;   // the trailing range ends exactly at int.MaxValue: no overflow
            _free.RemoveAt(i);
        }
        _free.Insert(i, (start, count));
        return true;
    }

    private int LowerBound(int start)
    {
        int lo = 0, hi = _free.Count;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (_free[mid].Start < start) lo = mid + 1; else hi = mid;
        }
        return lo;
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
        int at = _starts.BinarySearch((int)page);
        if (at < 0) at = ~at - 1;
        if (at < 0) return null;
        var m = _byIndex[_starts[at]];
        return page < (long)m.Index + m.Count ? m : null;
    }

    /// <summary>All maps (a copy).</summary>
    public List<GrantMap> All() => new(_byIndex.Values);
}
