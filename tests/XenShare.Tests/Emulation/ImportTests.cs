using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

/// <summary>EI01-EI11, D06: IOCTL_GNTDEV_DMABUF_IMP_TO_REFS and IMP_RELEASE.</summary>
public sealed class ImportTests : DmaBufTest
{
    private GuestKernel K0 => Dom0.Kernel;

    private void AssertEntriesInvalid(IEnumerable<uint> refs) =>
        Assert.All(refs, r => Assert.Equal(0, Entry(Dom0, r).Flags));

    /// <summary>domU maps dom0's refs through its gntdev and mmaps them read-write.</summary>
    private (int Gd, ulong Off, long Va) PeerMap(params uint[] refs)
    {
        int gdu = Open(PU, GntDev);
        ulong off = MapGrantRefs(PU, gdu, Dom0.Id, refs);
        long va = PU.Mmap(gdu, (long)off, refs.Length * 4096L, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        Assert.True(va > 0, $"peer mmap: {va}");
        return (gdu, off, va);
    }

    private void PeerUnmap((int Gd, ulong Off, long Va) m, int count)
    {
        Assert.Equal(0, PU.Munmap(m.Va, count * 4096L));
        Assert.Equal(0, UnmapGrantRef(PU, m.Gd, m.Off, (uint)count));
        Assert.Equal(0, PU.Close(m.Gd));
    }

    [Fact]
    public void EI01_CountZeroOrAboveLimitIsEinval()
    {
        int gd = Open(P0, GntDev);
        var (buf, _) = HeapBuffer(1);
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, buf, 0, DomU.Id.Value, out _));
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, buf, 65537, DomU.Id.Value, out _));
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, 999, 0, DomU.Id.Value, out _));     // count before fd
        Assert.Equal(0, K0.GrantRefsInUse);
        Assert.Equal(1, FdRefs(P0, buf));
        Assert.Equal(0, P0.Close(buf));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EI01_FdNotOpenIsEbadf_NotADmaBufIsEinval()
    {
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.EBADF, Import(P0, gd, 7, 1, DomU.Id.Value, out _));
        Assert.Equal(-Errno.EBADF, Import(P0, gd, -1, 1, DomU.Id.Value, out _));
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, gd, 1, DomU.Id.Value, out _));       // a gntdev fd
        int ga = Open(P0, GntAlloc);
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, ga, 1, DomU.Id.Value, out _));       // a gntalloc fd
        Assert.Equal(0, K0.GrantRefsInUse);
        Assert.Equal(0, P0.Close(ga));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EI02_GntdevAttachesAndMapsBidirectional_HeldUntilRelease()
    {
        var x = new TestExporter(K0, 2);
        int fd = x.Install(P0, out var buf);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 2, DomU.Id.Value, out var refs));
        Assert.Equal((1, 1, 0, 0), (x.Attaches, x.Maps, x.Unmaps, x.Detaches));
        Assert.Equal([DmaDirection.Bidirectional], x.MapDirections);
        Assert.Equal(1, buf!.AttachmentCount);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, x.Releases);                                   // the import holds the buffer
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal((1, 1, 1, 1, 1), (x.Attaches, x.Maps, x.Unmaps, x.Detaches, x.Releases));
        AssertEntriesInvalid(refs);
        Assert.Equal(0, P0.Close(gd));
    }

    [Theory]
    [InlineData(-Errno.EPERM, 0)]
    [InlineData(-Errno.ENODEV, 0)]
    [InlineData(0, -Errno.EBUSY)]
    [InlineData(0, -Errno.ENOMEM)]
    [InlineData(0, -Errno.EINVAL)]
    public void EI02_ExporterRefusalReturnedAsIs_NothingGranted(int attachErrno, int mapErrno)
    {
        var x = new TestExporter(K0, 2) { AttachErrno = attachErrno, MapErrno = mapErrno };
        int fd = x.Install(P0, out var buf);
        int gd = Open(P0, GntDev);
        int expect = attachErrno != 0 ? attachErrno : mapErrno;
        Assert.Equal(expect, Import(P0, gd, fd, 2, DomU.Id.Value, out _));
        Assert.Equal(expect, Import(P0, gd, fd, 3, DomU.Id.Value, out _));   // before the size check
        Assert.Equal(0, K0.GrantRefsInUse);
        Assert.Equal(0, buf!.AttachmentCount);
        Assert.Equal(attachErrno != 0 ? 0 : x.Attaches, x.Detaches);   // a refused map is detached again
        Assert.Equal(1, FdRefs(P0, fd));
        Assert.Equal(-Errno.ENOENT, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(1, x.Releases);
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EI03_FirstSegmentWithOffsetIsEinval()
    {
        var x = new TestExporter(K0, 2) { SgOffset = 256 };
        int fd = x.Install(P0, out var buf);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, fd, 2, DomU.Id.Value, out _));
        Assert.Equal(0, K0.GrantRefsInUse);
        Assert.Equal((1, 1, 1, 1), (x.Attaches, x.Maps, x.Unmaps, x.Detaches));
        Assert.Equal(0, buf!.AttachmentCount);
        Assert.Equal(-Errno.ENOENT, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(1, x.Releases);
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    [InlineData(1)]
    [InlineData(100)]
    public void EI03_SizeNotCountPagesIsEinval(int count)
    {
        var (fd, _) = HeapBuffer(3);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, fd, count, DomU.Id.Value, out _));
        Assert.Equal(0, K0.GrantRefsInUse);
        Assert.Equal(0, Attachments(P0, fd));
        Assert.Equal(0, Import(P0, gd, fd, 3, DomU.Id.Value, out _));              // the exact size works
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EI03_SizeNotAPageMultipleIsEinval()
    {
        var x = new TestExporter(K0, 2) { SizeOverride = 2 * 4096 - 1 };
        int fd = x.Install(P0, out _);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, fd, 2, DomU.Id.Value, out _));
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, fd, 1, DomU.Id.Value, out _));
        Assert.Equal(0, K0.GrantRefsInUse);
        Assert.Equal(x.Attaches, x.Detaches);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EI05_RefsDistinctAbove7_ReadWriteEntriesWithDomidAndFramesInOrder()
    {
        var (fd, frames) = HeapBuffer(5);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 5, DomU.Id.Value, out var refs));
        Assert.Equal(5, refs.Length);
        Assert.Equal(5, refs.Distinct().Count());
        Assert.All(refs, r => Assert.True(r >= 8, $"ref {r}"));
        for (int i = 0; i < 5; i++)
        {
            var e = Entry(Dom0, refs[i]);
            Assert.Equal(Gtf.permit_access, e.Flags);                  // read-write, not mapped yet
            Assert.Equal(DomU.Id.Value, e.DomId);
            Assert.Equal((uint)frames[i].Value, e.Frame);
        }
        Assert.Equal(5, K0.GrantRefsInUse);
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
    }

    [Fact]
    public void EI05_ScatteredFramesInOrder_AndRefsWrittenBack()
    {
        // Scatter dom0's RAM so that the heap buffer's frames are not in order of allocation.
        var hold = new List<GuestFrame>();
        var tmp = new GuestFrame[12];
        Assert.True(K0.TryAllocPages(tmp, zero: false));
        for (int i = 0; i < tmp.Length; i++) { if (i % 3 == 0) K0.FreePage(tmp[i]); else hold.Add(tmp[i]); }
        var (fd, frames) = HeapBuffer(6);
        int gd = Open(P0, GntDev);
        var arg = ImpArg(fd, 6, DomU.Id.Value);
        Assert.Equal(0, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_IMP_TO_REFS, arg));
        var op = Read<ioctl_gntdev_dmabuf_imp_to_refs>(arg);
        Assert.Equal((uint)fd, op.fd);
        Assert.Equal(6u, op.count);
        var refs = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, uint>(arg.AsSpan(16, 24)).ToArray();
        Assert.Equal(op.refs, refs[0]);
        Assert.Equal(frames.Select(f => (uint)f.Value), refs.Select(r => Entry(Dom0, r).Frame));
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        foreach (var f in hold) K0.FreePage(f);
    }

    [Fact]
    public void EI05_FramesTakenFromDmaAddresses_BufferWithoutPages()
    {
        var x = new TestExporter(K0, 3) { NoPages = true };
        int fd = x.Install(P0, out _);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 3, DomU.Id.Value, out var refs));
        Assert.Equal(x.Frames.Select(f => (uint)f.Value), refs.Select(r => Entry(Dom0, r).Frame));
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
    }

    [Fact]
    public void EI05_PeerReadsAndWritesTheBufferThroughTheRefs()
    {
        var (fd, _) = HeapBuffer(3);
        long va = P0.Mmap(fd, 0, 3 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        var local = GuestMemory.AsSpan(va, 3 * 4096);
        for (int i = 0; i < 3; i++) local[i * 4096 + 1] = (byte)(10 + i);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 3, DomU.Id.Value, out var refs));
        var m = PeerMap(refs);
        var peer = GuestMemory.AsSpan(m.Va, 3 * 4096);
        for (int i = 0; i < 3; i++) Assert.Equal(10 + i, peer[i * 4096 + 1]);
        peer[2 * 4096 + 2] = 0x77;                                        // read-write grant
        Assert.Equal(0x77, local[2 * 4096 + 2]);
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(Dom0, refs[0]).Flags);
        PeerUnmap(m, 3);
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Munmap(va, 3 * 4096));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
    }

    [Fact]
    public void EI05_ImportOfAGntdevExportedBuffer()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int gd2 = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var buf = GetBuf(P0, fd);
        var att = buf.Attach(new DmaDevice(K0, "probe", DmaTranslation.Iommu), out _)!;
        var pages = buf.MapAttachment(att, DmaDirection.ToDevice, out _)!.Pages.ToArray();
        buf.Detach(att);
        buf.Put();
        Assert.Equal(0, Import(P0, gd2, fd, 2, 5, out var refs));         // ballooned pages, no RAM behind them
        Assert.Equal(pages.Select(p => (uint)p.Value), refs.Select(r => Entry(Dom0, r).Frame));
        Assert.Equal(0, ImpRelease(P0, gd2, fd));
        Assert.Equal(0, P0.Close(fd));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(gd2));
        g.Close();
    }

    [Fact]
    public void EI06_ReservedNotChecked_UnknownDomidAccepted()
    {
        var (fd, _) = HeapBuffer(2);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 2, 999, out var refs, reserved: 0xDEADBEEF));
        Assert.All(refs, r => Assert.Equal((Gtf.permit_access, (ushort)999), (Entry(Dom0, r).Flags, Entry(Dom0, r).DomId)));
        Assert.Equal(0, ImpRelease(P0, gd, fd, reserved: 0xFFFF_FFFF));
        AssertEntriesInvalid(refs);
        Assert.Equal(0, Import(P0, gd, fd, 2, 0x7FF0, out refs));                // DOMID_SELF: just a number here
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, Import(P0, gd, fd, 2, 0x10000u + DomU.Id.Value, out refs));   // domid_t is 16 bits
        Assert.All(refs, r => Assert.Equal(DomU.Id.Value, Entry(Dom0, r).DomId));
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
    }

    [Fact]
    public void EI07_DmaBufFdClosedAfterImport_ImportStaysValid()
    {
        var (fd, frames) = HeapBuffer(2);
        long va = P0.Mmap(fd, 0, 2 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        GuestMemory.AsSpan(va, 8192)[4096 + 3] = 0x33;
        Assert.Equal(0, P0.Munmap(va, 2 * 4096));
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 2, DomU.Id.Value, out var refs));
        int ramFree = K0.Ram.FreeCount;
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(ramFree, K0.Ram.FreeCount);                        // still held by the import
        int other = P0.Dup(gd);                                          // the number now names another file
        Assert.Equal(fd, other);
        var m = PeerMap(refs);
        Assert.Equal(0x33, GuestMemory.AsSpan(m.Va, 8192)[4096 + 3]);
        PeerUnmap(m, 2);
        Assert.Equal(0, ImpRelease(P0, gd, fd));                         // released by the same number
        Assert.Equal(ramFree + 2, K0.Ram.FreeCount);
        Assert.Equal(0, P0.Close(other));
        Assert.Equal(0, P0.Close(gd));
        _ = frames;
    }

    [Fact]
    public void EI08_ReleaseUnknownIsEnoent_SecondReleaseIsEnoent()
    {
        var (fd, _) = HeapBuffer(1);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.ENOENT, ImpRelease(P0, gd, fd));
        Assert.Equal(-Errno.ENOENT, ImpRelease(P0, gd, 12345));
        Assert.Equal(0, Import(P0, gd, fd, 1, DomU.Id.Value, out _));
        int gd2 = Open(P0, GntDev);
        Assert.Equal(-Errno.ENOENT, ImpRelease(P0, gd2, fd));           // imports are per gntdev file
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(-Errno.ENOENT, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(gd2));
    }

    [Fact]
    public void EI08_Realxen_SameBufferImportedTwice_EachReleaseDropsOne()
    {
        var x = new TestExporter(K0, 2);
        int fd = x.Install(P0, out _);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 2, DomU.Id.Value, out var r1));
        Assert.Equal(0, Import(P0, gd, fd, 2, DomU.Id.Value, out var r2));
        Assert.Empty(r1.Intersect(r2));
        Assert.Equal(4, K0.GrantRefsInUse);
        Assert.Equal(2, x.Attaches);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(2, K0.GrantRefsInUse);
        Assert.Equal(0, x.Releases);
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, K0.GrantRefsInUse);
        Assert.Equal(1, x.Releases);
        AssertEntriesInvalid(r1.Concat(r2));
        Assert.Equal(-Errno.ENOENT, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(gd));
    }

    [Fact]
    public void EI08_Realxen_ImportedExportSurvivesExporterFdCloseUntilImpRelease()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int gdImp = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        Assert.Equal(0, Import(P0, gdImp, fd, 2, DomU.Id.Value, out _));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(-Errno.ETIMEDOUT, Wait(P0, gd, fd, 50));
        AssertMappedByExport(g);
        Assert.Equal(0, ImpRelease(P0, gdImp, fd));
        Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 50));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(gdImp));
        g.Close();
    }

    [Fact]
    public void EI09_D06_ReleaseWhilePeerMaps_DeferredReclaimAfterPeerUnmaps()
    {
        var (fd, frames) = HeapBuffer(3);
        long va = P0.Mmap(fd, 0, 3 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED);
        GuestMemory.AsSpan(va, 3 * 4096)[8192 + 5] = 0x42;
        Assert.Equal(0, P0.Munmap(va, 3 * 4096));
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 3, DomU.Id.Value, out var refs));
        var m = PeerMap(refs[1], refs[2]);                          // the peer maps two of the three
        int ramFree = K0.Ram.FreeCount;

        Assert.Equal(0, ImpRelease(P0, gd, fd));                   // returns 0 regardless
        Assert.Equal(0, Entry(Dom0, refs[0]).Flags);                // the unmapped one ends at once
        Assert.Equal(2, K0.DeferredReclaims);
        Assert.True(K0.OldestDeferredReclaimAge >= TimeSpan.Zero);
        Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, Entry(Dom0, refs[1]).Flags);
        Assert.Equal(2, K0.GrantRefsInUse);                         // the deferred refs are not free

        Assert.Equal(0, P0.Close(fd));                              // the heap frees its pages ...
        Assert.Equal(ramFree + 1, K0.Ram.FreeCount);                // ... but the two pinned ones stay
        var peer = GuestMemory.AsSpan(m.Va, 2 * 4096);
        Assert.Equal(0x42, peer[4096 + 5]);                         // the peer still reads the right data
        peer[7] = 0x99;
        Assert.Equal(0x99, peer[7]);

        // The deferred refs are not handed out again while pending.
        var (fd2, _) = HeapBuffer(4);
        Assert.Equal(0, Import(P0, gd, fd2, 4, DomU.Id.Value, out var refs2));
        Assert.Empty(refs2.Intersect([refs[1], refs[2]]));
        Assert.Equal(0, ImpRelease(P0, gd, fd2));
        Assert.Equal(0, P0.Close(fd2));
        Assert.Equal(2, K0.DeferredReclaims);
        Assert.True(K0.OldestDeferredReclaimAge > TimeSpan.Zero);

        Assert.Equal(0, PU.Munmap(m.Va, 2 * 4096));
        Assert.Equal(2, K0.DeferredReclaims);                      // GD03 (Arm): the peer still maps the grants
        Assert.Equal(0, UnmapGrantRef(PU, m.Gd, m.Off, 2));        // D06: reclaimed right here, no timer
        Assert.Equal(0, K0.DeferredReclaims);
        Assert.Equal(TimeSpan.Zero, K0.OldestDeferredReclaimAge);
        Assert.Equal(0, K0.GrantRefsInUse);
        AssertEntriesInvalid(refs);
        Assert.Equal(ramFree + 3, K0.Ram.FreeCount);
        Assert.Equal(0, PU.Close(m.Gd));
        Assert.Equal(0, P0.Close(gd));
        _ = frames;
    }

    [Fact]
    public void EI09_D06_ManyDeferredEntriesAllReclaimedAtOnce()
    {
        // Linux frees 10 entries a second; the emulator reclaims every one at the peer's unmap.
        var (fd, _) = HeapBuffer(40);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 40, DomU.Id.Value, out var refs));
        var m = PeerMap(refs);
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(40, K0.DeferredReclaims);
        Assert.Equal(0, PU.Munmap(m.Va, 40 * 4096));
        Assert.Equal(40, K0.DeferredReclaims);                     // GD03 (Arm): the peer still maps the grants
        Assert.Equal(0, UnmapGrantRef(PU, m.Gd, m.Off, 40));
        Assert.Equal(0, K0.DeferredReclaims);
        Assert.Equal(0, PU.Close(m.Gd));
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EI10_ReleaseWithoutPeerMapping_EntriesClearAndRefsFreeAtOnce()
    {
        var (fd, _) = HeapBuffer(3);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 3, DomU.Id.Value, out var refs));
        var m = PeerMap(refs);
        PeerUnmap(m, 3);                                           // mapped once, then let go
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        AssertEntriesInvalid(refs);
        Assert.Equal(0, K0.DeferredReclaims);
        Assert.Equal(0, K0.GrantRefsInUse);
        Assert.Equal(0, Import(P0, gd, fd, 3, DomU.Id.Value, out var again));
        Assert.Equal(refs.OrderBy(r => r), again.OrderBy(r => r));   // the same refs are free again
        Assert.Equal(0, ImpRelease(P0, gd, fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
    }

    [Fact]
    public void EI11_ClosingGntdevReleasesEveryImport()
    {
        var xa = new TestExporter(K0, 2);
        int a = xa.Install(P0, out _);
        var (b, _) = HeapBuffer(3);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, a, 2, DomU.Id.Value, out var ra));
        Assert.Equal(0, Import(P0, gd, b, 3, DomU.Id.Value, out var rb));
        Assert.Equal(0, Import(P0, gd, b, 3, DomU.Id.Value, out var rb2));
        Assert.Equal(0, P0.Close(a));
        Assert.Equal(0, P0.Close(b));
        Assert.Equal(8, K0.GrantRefsInUse);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, K0.GrantRefsInUse);
        AssertEntriesInvalid(ra.Concat(rb).Concat(rb2));
        Assert.Equal((1, 1, 1), (xa.Unmaps, xa.Detaches, xa.Releases));
        AssertNoLeaks();
    }

    [Fact]
    public void EI11_ClosingGntdevWhilePeerMaps_DefersLikeImpRelease()
    {
        var (fd, _) = HeapBuffer(2);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Import(P0, gd, fd, 2, DomU.Id.Value, out var refs));
        var m = PeerMap(refs);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(2, K0.DeferredReclaims);
        Assert.Equal(0, PU.Munmap(m.Va, 2 * 4096));
        Assert.Equal(2, K0.DeferredReclaims);                      // GD03 (Arm): the peer still maps the grants
        Assert.Equal(0, UnmapGrantRef(PU, m.Gd, m.Off, 2));
        Assert.Equal(0, K0.DeferredReclaims);
        Assert.Equal(0, PU.Close(m.Gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EI11_ProcessExitReleasesImports()
    {
        var p = Dom0.StartProcess();
        int fd = SystemHeap.Allocate(p, 2, contiguous: true);
        int gd = Open(p, GntDev);
        Assert.Equal(0, Import(p, gd, fd, 2, DomU.Id.Value, out _));
        p.Dispose();
        Assert.Equal(0, K0.GrantRefsInUse);
        AssertNoLeaks();
    }
}

/// <summary>EI04 with a one-frame grant table in dom0 (512 entries, 504 usable).</summary>
public sealed class ImportGrantTableFullTests() : DmaBufTest(null, null, new DomainConfig { MaxGrantFrames = 1 })
{
    [Fact]
    public void EI04_GrantTableCannotGrow_IsEnospcWithNoRefsLeaked()
    {
        var k = Dom0.Kernel;
        int usable = (int)(GrantTableConstants.EntriesPerFrame - GrantTableConstants.NrReservedEntries);
        var (big, _) = HeapBuffer(usable + 1);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.ENOSPC, Import(P0, gd, big, usable + 1, DomU.Id.Value, out _));
        Assert.Equal(0, k.GrantRefsInUse);
        Assert.Equal(0, Attachments(P0, big));
        Assert.Equal(0, Dom0.Domain.GrantTable.CountValidEntries());
        Assert.Equal(1, FdRefs(P0, big));
        Assert.Equal(0, P0.Close(big));

        var (a, _) = HeapBuffer(usable - 1);
        Assert.Equal(0, Import(P0, gd, a, usable - 1, DomU.Id.Value, out _));
        var (b, _) = HeapBuffer(2);
        Assert.Equal(-Errno.ENOSPC, Import(P0, gd, b, 2, DomU.Id.Value, out _));   // one left, two asked
        Assert.Equal(usable - 1, k.GrantRefsInUse);
        var (c, _) = HeapBuffer(1);
        Assert.Equal(0, Import(P0, gd, c, 1, DomU.Id.Value, out var last));         // the last one fits
        Assert.Equal(usable, k.GrantRefsInUse);
        Assert.Equal(-Errno.EINVAL, Import(P0, gd, b, 3, DomU.Id.Value, out _));   // the size check comes before ENOSPC
        Assert.Equal(0, ImpRelease(P0, gd, a));
        Assert.Equal(0, Import(P0, gd, b, 2, DomU.Id.Value, out _));                 // freed refs are reused
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, k.GrantRefsInUse);
        foreach (int f in new[] { a, b, c }) Assert.Equal(0, P0.Close(f));
        _ = last;
        AssertNoLeaks();
    }
}
