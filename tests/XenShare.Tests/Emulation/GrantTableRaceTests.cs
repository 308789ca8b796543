using System.Buffers.Binary;
using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using Xunit.Abstractions;

namespace XenShare.Tests.Emulation;

/// <summary>Concurrent grant-table hypercalls on one host: pins, flags and maptrack stay consistent,
/// data is not lost, and a granter's end-access and a mapper's map never both win (GT07, GT09, GT10, GT11).</summary>
public sealed class GrantTableRaceTests : GrantTableTestBase
{
    private static readonly TimeSpan Generous = TimeSpan.FromSeconds(30);
    private readonly ITestOutputHelper _output;

    public GrantTableRaceTests(ITestOutputHelper output) => _output = output;

    private Domain D0 => Dom0.Domain;
    private Domain DU => DomU.Domain;

    private static Task Run(Action body) =>
        Task.Factory.StartNew(body, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

    private static void Sync(Barrier b)
    {
        if (!b.SignalAndWait(Generous)) throw new TimeoutException("the other side of the race never arrived");
    }

    private static ulong Stamp(int thread, int iter, int page) => ((ulong)thread << 48) | ((ulong)iter << 8) | (uint)page;

    [Fact]
    public async Task GT07_GT09_ConcurrentMapUnmapCopy_PinsFlagsMaptrackClean_DataIntact()
    {
        const int Pages = 4, Mappers = 4, Copiers = 2, MapIters = 1500, CopyIters = 3000, Region = 64;
        var pages = Enumerable.Range(0, Pages).Select(_ => Grant(DomU, Dom0.Id)).ToArray();
        var staging = Grant(DomU, Dom0.Id);
        var mfns = pages.Select(MfnOf).ToArray();
        var locals = Enumerable.Range(0, Mappers + Copiers + 1).Select(_ => LocalPage(Dom0)).ToArray();
        var mem = Xen.Memory;

        // Mapper t owns bytes [t*512, t*512+64) of every page: map all pages writable, stamp its region
        // through the mapping, read it back with a grant copy, unmap.
        Task Mapper(int t) => Run(() =>
        {
            var ops = new GnttabMapGrantRef[Pages];
            var copies = new GnttabCopy[Pages];
            var unmaps = new GnttabUnmapGrantRef[Pages];
            var local = locals[t];
            for (int i = 0; i < MapIters; i++)
            {
                for (int k = 0; k < Pages; k++) ops[k] = MapOp(D0, DomU.Id, pages[k].Ref, t * Pages + k);
                Xen.MapGrantRefs(D0, ops);
                for (int k = 0; k < Pages; k++)
                {
                    if (ops[k].Status != GntSt.okay) throw new InvalidOperationException($"mapper {t}: map {GntSt.Name(ops[k].Status)}");
                    if (ops[k].DevBusAddr != mfns[k].Value << 12) throw new InvalidOperationException($"mapper {t}: wrong frame");
                    var span = mem.FrameSpan(new MachineFrame(ops[k].DevBusAddr >> 12)).Slice(t * 512, Region);
                    BinaryPrimitives.WriteUInt64LittleEndian(span, Stamp(t, i, k));
                    span[8..].Fill((byte)i);
                    copies[k] = new GnttabCopy { Source = GrefPtr(pages[k], (ushort)(t * 512)), Dest = LocalPtr(local, (ushort)(k * Region)), Len = Region, Flags = GntCopy.source_gref };
                }
                Xen.Copy(D0, copies);
                var back = Dom0.Kernel.FrameSpan(local);
                for (int k = 0; k < Pages; k++)
                {
                    if (copies[k].Status != GntSt.okay) throw new InvalidOperationException($"mapper {t}: copy {GntSt.Name(copies[k].Status)}");
                    var got = back.Slice(k * Region, Region);
                    if (BinaryPrimitives.ReadUInt64LittleEndian(got) != Stamp(t, i, k) || got[8..].IndexOfAnyExcept((byte)i) >= 0)
                        throw new InvalidOperationException($"mapper {t}: data lost on page {k} iteration {i}");
                }
                for (int k = 0; k < Pages; k++) unmaps[k] = new GnttabUnmapGrantRef { Handle = ops[k].Handle, HostAddr = ops[k].HostAddr, DevBusAddr = ops[k].DevBusAddr };
                Xen.UnmapGrantRefs(D0, unmaps);
                foreach (var u in unmaps) if (u.Status != GntSt.okay) throw new InvalidOperationException($"mapper {t}: unmap {GntSt.Name(u.Status)}");
            }
        });

        // Copier c owns bytes [2048 + c*512, +64): local -> staging gref -> every page gref (gref to gref),
        // then reads every page back into a local page and checks.
        Task Copier(int c) => Run(() =>
        {
            var local = locals[Mappers + c];
            int off = 2048 + c * 512;
            var toPages = new GnttabCopy[Pages + 1];
            var back = new GnttabCopy[Pages];
            for (int i = 0; i < CopyIters; i++)
            {
                var src = Dom0.Kernel.FrameSpan(local);
                BinaryPrimitives.WriteUInt64LittleEndian(src, Stamp(16 + c, i, 0));
                src[8..Region].Fill((byte)~i);
                toPages[0] = new GnttabCopy { Source = LocalPtr(local), Dest = GrefPtr(staging, (ushort)off), Len = Region, Flags = GntCopy.dest_gref };
                for (int k = 0; k < Pages; k++)
                    toPages[k + 1] = new GnttabCopy { Source = GrefPtr(staging, (ushort)off), Dest = GrefPtr(pages[k], (ushort)off), Len = Region, Flags = GntCopy.source_gref | GntCopy.dest_gref };
                Xen.Copy(D0, toPages);   // in order: the staging copy lands before the fan-out
                foreach (var o in toPages) if (o.Status != GntSt.okay) throw new InvalidOperationException($"copier {c}: {GntSt.Name(o.Status)}");
                for (int k = 0; k < Pages; k++)
                    back[k] = new GnttabCopy { Source = GrefPtr(pages[k], (ushort)off), Dest = LocalPtr(local, (ushort)(Region * (k + 1))), Len = Region, Flags = GntCopy.source_gref };
                Xen.Copy(D0, back);
                var got = Dom0.Kernel.FrameSpan(local);
                for (int k = 0; k < Pages; k++)
                {
                    if (back[k].Status != GntSt.okay) throw new InvalidOperationException($"copier {c}: {GntSt.Name(back[k].Status)}");
                    if (!got.Slice(Region * (k + 1), Region).SequenceEqual(got[..Region])) throw new InvalidOperationException($"copier {c}: data lost on page {k}");
                }
            }
        });

        // One more thread keeps read-only maps of every page coming and going.
        Task Reader() => Run(() =>
        {
            var ops = new GnttabMapGrantRef[Pages];
            var unmaps = new GnttabUnmapGrantRef[Pages];
            for (int i = 0; i < MapIters; i++)
            {
                for (int k = 0; k < Pages; k++) ops[k] = MapOp(D0, DomU.Id, pages[k].Ref, 64 + k, GntMap.host_map | GntMap.@readonly);
                Xen.MapGrantRefs(D0, ops);
                for (int k = 0; k < Pages; k++)
                {
                    if (ops[k].Status != GntSt.okay) throw new InvalidOperationException($"reader: map {GntSt.Name(ops[k].Status)}");
                    if ((DU.GrantTable.ReadEntry(pages[k].GrantRef).Flags & Gtf.reading) == 0) throw new InvalidOperationException("reader: GTF_reading not set while mapped");
                    unmaps[k] = new GnttabUnmapGrantRef { Handle = ops[k].Handle };
                }
                Xen.UnmapGrantRefs(D0, unmaps);
                foreach (var u in unmaps) if (u.Status != GntSt.okay) throw new InvalidOperationException($"reader: unmap {GntSt.Name(u.Status)}");
            }
        });

        var tasks = Enumerable.Range(0, Mappers).Select(Mapper)
            .Concat(Enumerable.Range(0, Copiers).Select(Copier))
            .Append(Reader())
            .ToArray();
        await Task.WhenAll(tasks);

        Assert.Equal(0, DU.GrantTable.ActivePins);
        Assert.Equal(0, D0.MapTrackInUse);
        Assert.Equal(0, D0.P2M.CountForeign());
        for (int k = 0; k < Pages; k++)
        {
            Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(pages[k].GrantRef).Flags);
            Assert.Equal(1, mem.RefCountOf(mfns[k]));
            var page = DomU.Kernel.FrameSpan(pages[k].Gfn);
            for (int t = 0; t < Mappers; t++)
                Assert.Equal(Stamp(t, MapIters - 1, k), BinaryPrimitives.ReadUInt64LittleEndian(page[(t * 512)..]));
            for (int c = 0; c < Copiers; c++)
                Assert.Equal(Stamp(16 + c, CopyIters - 1, 0), BinaryPrimitives.ReadUInt64LittleEndian(page[(2048 + c * 512)..]));
        }
        Assert.Equal(Gtf.permit_access, DU.GrantTable.ReadEntry(staging.GrantRef).Flags);
        foreach (var l in locals) Dom0.Kernel.FreePage(l);
        Revoke(staging);
        foreach (var p in pages) Revoke(p);
    }

    [Fact]
    public async Task GT10_EndAccessRacesMap_ExactlyOneWinsEveryRound()
    {
        const int Rounds = 3000;
        var g = Grant(DomU, Dom0.Id);
        var endOk = new bool[Rounds];
        var endAfterUnmap = new bool[Rounds];
        var mapStatus = new short[Rounds];
        var unmapStatus = new short[Rounds];
        var flagsWhileMapped = new ushort[Rounds];
        using var barrier = new Barrier(2);

        var granter = Run(() =>
        {
            var rnd = new Random(1);
            for (int r = 0; r < Rounds; r++)
            {
                DomU.Kernel.Grants.Grant(g.Ref, Dom0.Id, g.Gfn, readOnly: r % 3 == 2);
                Sync(barrier);
                Thread.SpinWait(rnd.Next(0, 64));
                endOk[r] = DU.GrantTable.TryEndAccess(g.GrantRef);
                Sync(barrier);   // both done
                Sync(barrier);   // mapper has unmapped
                endAfterUnmap[r] = endOk[r] || DU.GrantTable.TryEndAccess(g.GrantRef);
            }
        });
        var mapper = Run(() =>
        {
            var rnd = new Random(2);
            for (int r = 0; r < Rounds; r++)
            {
                Sync(barrier);
                Thread.SpinWait(rnd.Next(0, 64));
                var op = MapOp(D0, DomU.Id, g.Ref, r % 16, r % 2 == 0 ? GntMap.host_map : GntMap.host_map | GntMap.@readonly);
                mapStatus[r] = Xen.MapOne(D0, ref op);
                Sync(barrier);
                if (mapStatus[r] == GntSt.okay)
                {
                    flagsWhileMapped[r] = DU.GrantTable.ReadEntry(g.GrantRef).Flags;
                    var u = new GnttabUnmapGrantRef { Handle = op.Handle, HostAddr = op.HostAddr, DevBusAddr = op.DevBusAddr };
                    unmapStatus[r] = Xen.UnmapOne(D0, ref u);
                }
                Sync(barrier);
            }
        });
        await Task.WhenAll(granter, mapper);

        int mapWins = 0, endWins = 0;
        for (int r = 0; r < Rounds; r++)
        {
            bool mapped = mapStatus[r] == GntSt.okay;
            Assert.True(mapped != endOk[r], $"round {r}: map {GntSt.Name(mapStatus[r])}, end access {endOk[r]}");
            if (mapped)
            {
                mapWins++;
                Assert.Equal(GntSt.okay, unmapStatus[r]);
                Assert.NotEqual(0, flagsWhileMapped[r] & Gtf.reading);
                Assert.True(endAfterUnmap[r], $"round {r}: end access failed after the unmap");
            }
            else
            {
                endWins++;
                // The entry was gone (or, for a read-only grant, refused for writing).
                Assert.Equal(GntSt.general_error, mapStatus[r]);
            }
        }
        Assert.Equal(Rounds, mapWins + endWins);
        _output.WriteLine($"map won {mapWins}, end access won {endWins} of {Rounds} rounds");
        Assert.Equal(0, DU.GrantTable.ActivePins);
        Assert.Equal(0, D0.MapTrackInUse);
        Assert.Equal(default, DU.GrantTable.ReadEntry(g.GrantRef));
        DomU.Kernel.Grants.Free(g.Ref);
        DomU.Kernel.FreePage(g.Gfn);
    }

    [Fact]
    public async Task GT11_GranterDestroyedWhileMappersUnmap_ZombieReapedOnce_FramesBack()
    {
        const int Threads = 4, PerThread = 64;
        long framesBefore = Xen.FramesInUse;
        for (int round = 0; round < 20; round++)
        {
            var victim = Host.CreateGuest(new DomainConfig { RamPages = 64 });
            var grants = Enumerable.Range(0, Threads).Select(_ => Grant(victim, Dom0.Id)).ToArray();
            var maps = new GnttabMapGrantRef[Threads][];
            for (int t = 0; t < Threads; t++)
            {
                maps[t] = new GnttabMapGrantRef[PerThread];
                for (int i = 0; i < PerThread; i++) maps[t][i] = MapOp(D0, victim.Id, grants[t].Ref, t * PerThread + i);
                Xen.MapGrantRefs(D0, maps[t]);
                Assert.All(maps[t], o => Assert.Equal(GntSt.okay, o.Status));
            }
            using var start = new Barrier(Threads + 1);
            var failures = new int[Threads];
            var tasks = Enumerable.Range(0, Threads).Select(t => Run(() =>
            {
                Sync(start);
                foreach (var m in maps[t])
                {
                    var u = new GnttabUnmapGrantRef { Handle = m.Handle };
                    if (Xen.UnmapOne(D0, ref u) != GntSt.okay) failures[t]++;
                }
            })).ToArray();
            Sync(start);
            Host.DestroyGuest(victim);
            await Task.WhenAll(tasks);
            Assert.All(failures, f => Assert.Equal(0, f));
            Assert.Equal(0, Xen.ZombieCount);
            Assert.Equal(0, D0.MapTrackInUse);
            Assert.Equal(framesBefore, Xen.FramesInUse);
        }
    }

    [Fact]
    public async Task GT02_GT03_ConcurrentRefAllocation_NeverReserved_NeverDuplicated()
    {
        const int Threads = 4, Iters = 400;
        var grants = DomU.Kernel.Grants;
        var held = new List<uint>[Threads];
        var tasks = Enumerable.Range(0, Threads).Select(t => Run(() =>
        {
            var mine = held[t] = new List<uint>();
            var rnd = new Random(t);
            for (int i = 0; i < Iters; i++)
            {
                var batch = new uint[rnd.Next(1, 9)];
                if (grants.Allocate(batch) != 0) throw new InvalidOperationException("allocation failed");
                mine.AddRange(batch);
                if (i % 2 == 1)
                    for (int k = 0; k < batch.Length / 2; k++) { grants.Free(mine[0]); mine.RemoveAt(0); }
            }
        })).ToArray();
        await Task.WhenAll(tasks);
        var all = held.SelectMany(h => h).ToList();
        Assert.All(all, r => Assert.True(r >= GrantTableConstants.NrReservedEntries));
        Assert.Equal(all.Count, all.Distinct().Count());
        Assert.Equal(all.Count, grants.InUse);
        Assert.True(all.Max() < DU.GrantTable.EntryCount);
        Assert.Equal(XenHost.QuerySize(DU).NrFrames, DU.GrantTable.NrFrames);
        foreach (uint r in all) grants.Free(r);
    }
}
