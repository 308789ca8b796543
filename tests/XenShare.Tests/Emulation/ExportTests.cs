using XenShare.Abi;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Kernel.Dma;
using XenShare.Emulation.Kernel.DmaBuf;

namespace XenShare.Tests.Emulation;

/// <summary>EX01-EX13 and D03/D04: IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS and the exported buffer's ops.</summary>
public sealed class ExportTests : DmaBufTest
{
    private FrameAllocator Unpop => Dom0.Kernel.Unpopulated;
    private FrameAllocator Ram => Dom0.Kernel.Ram;

    /// <summary>The exported buffer's pages (through a throw-away IOMMU attachment).</summary>
    private GuestFrame[] PagesOf(int fd)
    {
        var buf = GetBuf(P0, fd);
        var att = buf.Attach(new DmaDevice(Dom0.Kernel, "probe", DmaTranslation.Iommu), out _)!;
        var t = buf.MapAttachment(att, DmaDirection.Bidirectional, out _)!;
        var pages = t.Pages.ToArray();
        buf.UnmapAttachment(att, t, DmaDirection.Bidirectional);
        buf.Detach(att);
        buf.Put();
        return pages;
    }

    [Fact]
    public void EX02_CountZeroIsEinval()
    {
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, DomU.Id.Value, [], out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, GntDevIoctl.GNTDEV_DMA_FLAG_WC, DomU.Id.Value, [], out _));
        Assert.Equal(1, P0.OpenFdCount);
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EX02_CountAboveDefaultLimitIsEinval()
    {
        int gd = Open(P0, GntDev);
        var refs = new uint[65537];
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, DomU.Id.Value, refs, out _));
        Assert.Equal(Unpop.Count, Unpop.FreeCount);
        Assert.Equal(0, P0.Close(gd));
        AssertNoLeaks();
    }

    [Fact]
    public void EX03_WcAndCoherentTogetherIsEinvalWithNothingMapped()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int ramFree = Ram.FreeCount;
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, GntDevIoctl.GNTDEV_DMA_FLAG_WC | GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT, DomU.Id.Value, g.Refs, out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0xFFFF_FFFF, DomU.Id.Value, g.Refs, out _));
        AssertNotMapped(g);
        Assert.Equal(ramFree, Ram.FreeCount);
        Assert.Equal(2, P0.OpenFdCount + PU.OpenFdCount);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }

    [Theory]
    [InlineData(4u)]
    [InlineData(0x8000_0000u)]
    [InlineData(0xFFFF_FFFCu)]
    public void EX03_D04_UnknownFlagBitsAreIgnored(uint flags)
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g, flags);
        Assert.All(PagesOf(fd), p => Assert.True(p.Value >= Unpop.Base, "flags without WC/COHERENT use ballooned pages"));
        Assert.Equal(0, P0.Close(fd));
        // WC plus unknown bits is still WC: RAM-backed contiguous.
        fd = ExportOk(gd, g, flags | GntDevIoctl.GNTDEV_DMA_FLAG_WC);
        var pages = PagesOf(fd);
        Assert.All(pages, p => Assert.True(p.Value < Unpop.Base));
        Assert.Equal(pages[0].Value + 1, pages[1].Value);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX04_Flags0_BallooonedScatteredPages_ScanoutRefuses_IommuAccepts()
    {
        int frag = FragmentUnpopulated(4);
        var g = Share(4);
        int gd = Open(P0, GntDev);
        int unpopBefore = Unpop.FreeCount, ramBefore = Ram.FreeCount;
        int fd = ExportOk(gd, g, 0);
        Assert.Equal(unpopBefore - 4, Unpop.FreeCount);
        Assert.Equal(ramBefore, Ram.FreeCount);
        var buf = GetBuf(P0, fd);

        // A direct device sees the scattered ballooned pages as several segments.
        var direct = new DmaDevice(Dom0.Kernel, "direct");
        var datt = buf.Attach(direct, out _)!;
        var dt = buf.MapAttachment(datt, DmaDirection.ToDevice, out int e)!;
        Assert.Equal(0, e);
        Assert.True(dt.Segments.Count > 1, $"segments: {dt.Segments.Count}");
        Assert.All(dt.Pages, p => Assert.True(p.Value >= Unpop.Base));
        Assert.Equal(4 * 4096, dt.TotalLength);
        buf.Detach(datt);

        var scanout = new ScanoutImporter(Dom0.Kernel);
        Assert.Equal(-Errno.EINVAL, scanout.Import(buf));
        Assert.Equal(0, buf.AttachmentCount);

        var iommu = new DmaDevice(Dom0.Kernel, "gpu", DmaTranslation.Iommu);
        var att = buf.Attach(iommu, out _)!;
        var t = buf.MapAttachment(att, DmaDirection.Bidirectional, out e)!;
        var seg = Assert.Single(t.Segments);
        var px = new byte[1];
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(0, iommu.DmaRead(seg.DmaAddress + (ulong)i * 4096 + 4095, px));
            Assert.Equal(0x80 + i, px[0]);
        }
        buf.Detach(att);
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(unpopBefore, Unpop.FreeCount);
        Assert.Equal(0, P0.Close(gd));
        Assert.Equal(0, P0.Close(frag));
        g.Close();
    }

    [Theory]
    [InlineData(1u)] // WC
    [InlineData(2u)] // COHERENT
    public void EX04_WcOrCoherent_OneContiguousDmaAllocationGivenBackToXen(uint flags)
    {
        var g = Share(4);
        int gd = Open(P0, GntDev);
        int ramBefore = Ram.FreeCount, unpopBefore = Unpop.FreeCount;
        int fd = ExportOk(gd, g, flags);
        Assert.Equal(ramBefore - 4, Ram.FreeCount);       // one DMA allocation from RAM
        Assert.Equal(unpopBefore, Unpop.FreeCount);       // no ballooned page
        var buf = GetBuf(P0, fd);
        var scanout = new ScanoutImporter(Dom0.Kernel);
        Assert.Equal(0, scanout.Import(buf));
        var pages = scanout.Table!.Pages;
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(pages[0].Value + (ulong)i, pages[i].Value);
            // The GFN now holds the granted foreign frame (its RAM frame went back to Xen).
            Assert.True(Dom0.Domain.P2M.TryGet(pages[i], out _, out bool foreign));
            Assert.True(foreign);
            Assert.Equal(i + 1, scanout.ReadByte(i * 4096L));
            Assert.Equal(0x80 + i, scanout.ReadByte(i * 4096L + 4095));
        }
        g.Data[2 * 4096 + 100] = 0x5A;   // the granter writes, the scan-out sees it without a copy
        Assert.Equal(0x5A, scanout.ReadByte(2 * 4096 + 100));
        scanout.Release(buf);
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(ramBefore, Ram.FreeCount);
        foreach (var p in pages)
        {
            Assert.True(Dom0.Domain.P2M.TryGet(p, out _, out bool foreign));
            Assert.False(foreign);   // repopulated with RAM
        }
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX05_ReadOnlyGrantMakesExportFail()
    {
        var ro = Share(2, writable: false);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, DomU.Id.Value, ro.Refs, out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, GntDevIoctl.GNTDEV_DMA_FLAG_WC, DomU.Id.Value, ro.Refs, out _));
        Assert.All(Flags(ro), f => Assert.Equal(Gtf.permit_access | Gtf.@readonly, f));
        Assert.Equal(0, P0.Close(gd));
        ro.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void EX05_GrantsAreMappedWritable()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        AssertMappedByExport(g);   // GTF_writing: a write pin
        var buf = GetBuf(P0, fd);
        var dev = new DmaDevice(Dom0.Kernel, "dev", DmaTranslation.Iommu);
        var att = buf.Attach(dev, out _)!;
        var t = buf.MapAttachment(att, DmaDirection.FromDevice, out _)!;
        Assert.Equal(0, dev.DmaWrite(t.Segments[0].DmaAddress + 10, [0xEE]));
        Assert.Equal(0xEE, g.Data[10]);   // the device wrote into the granter's page
        buf.Detach(att);
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    public static TheoryData<string> BadRefKinds => new() { "bad-ref", "unused-ref", "reserved-ref", "other-domain", "read-only", "domid-self", "unknown-domain", "wrong-domid" };

    [Theory]
    [MemberData(nameof(BadRefKinds))]
    public void EX06_D03_AnyFailedGrantIsEinval_OthersUnmapped_NoFd(string kind)
    {
        var good = Share(3);
        var ro = Share(1, writable: false);
        var other = Share(1, to: new DomainId(77));   // granted to a domain that is not dom0
        int gd = Open(P0, GntDev);
        uint domid = DomU.Id.Value;
        uint bad = kind switch
        {
            "bad-ref" => 100_000,
            "unused-ref" => 400,
            "reserved-ref" => 3,
            "other-domain" => other.Refs[0],
            "read-only" => ro.Refs[0],
            _ => good.Refs[1],
        };
        if (kind == "domid-self") domid = 0x7FF0;
        if (kind == "unknown-domain") domid = 55;
        if (kind == "wrong-domid") domid = Dom0.Id.Value;
        uint[] refs = [good.Refs[0], bad, good.Refs[2]];
        int fdsBefore = P0.OpenFdCount;
        foreach (uint flags in new uint[] { 0, GntDevIoctl.GNTDEV_DMA_FLAG_WC, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT })
        {
            int ramFree = Ram.FreeCount;
            Assert.Equal(-Errno.EINVAL, Export(P0, gd, flags, domid, refs, out int fd));
            Assert.Equal(-1, fd);
            AssertNotMapped(good);
            AssertNotMapped(ro);
            AssertNotMapped(other);
            Assert.Equal(fdsBefore, P0.OpenFdCount);
            Assert.Equal(Unpop.Count, Unpop.FreeCount);
            Assert.Equal(ramFree, Ram.FreeCount);
            Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        }
        // The fd number that a failed export would have used is still the next one handed out (D03).
        int next = P0.Dup(gd);
        Assert.Equal(fdsBefore, next);
        Assert.Equal(0, P0.Close(next));
        Assert.Equal(0, P0.Close(gd));
        good.Close();
        ro.Close();
        other.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void EX06_Realxen_RefGrantedToAnotherDomainDomidSelfAndUnknownDomainAreEinval()
    {
        var other = Share(1, to: new DomainId(2));
        var mine = Share(1);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, DomU.Id.Value, other.Refs, out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, 0x7FF0, mine.Refs, out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, 0x7FF0 + 0x10000, mine.Refs, out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, 1234, mine.Refs, out _));
        AssertNotMapped(mine);
        AssertNotMapped(other);
        Assert.Equal(0, P0.Close(gd));
        other.Close();
        mine.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void EX06_Realxen_DomidIsCutTo16Bits()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Export(P0, gd, 0, 0x10000u + DomU.Id.Value, g.Refs, out int fd));
        AssertMappedByExport(g);
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, Export(P0, gd, 0, 0xABCD_0000u + DomU.Id.Value, g.Refs, out fd));
        Assert.Equal(0, P0.Close(fd));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX06_Realxen_SameRefTwiceInOneExportSucceeds()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        Assert.Equal(0, Export(P0, gd, 0, DomU.Id.Value, [g.Refs[1], g.Refs[1], g.Refs[0]], out int fd));
        Assert.Equal(3 * 4096, P0.Lseek(fd, 0, Posix.SEEK_END));
        var buf = GetBuf(P0, fd);
        var dev = new DmaDevice(Dom0.Kernel, "gpu", DmaTranslation.Iommu);
        var att = buf.Attach(dev, out _)!;
        var t = buf.MapAttachment(att, DmaDirection.ToDevice, out _)!;
        var px = new byte[1];
        foreach (var (page, want) in new[] { (0, 2), (1, 2), (2, 1) })
        {
            Assert.Equal(0, dev.DmaRead(t.Segments[0].DmaAddress + (ulong)page * 4096, px));
            Assert.Equal(want, px[0]);
        }
        buf.Detach(att);
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX07_EnomemWhenDmaAllocationImpossible()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        var refs = Enumerable.Repeat(g.Refs[0], Dom0.Domain.RamPages + 1).ToArray();
        int ramFree = Ram.FreeCount;
        Assert.Equal(-Errno.ENOMEM, Export(P0, gd, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT, DomU.Id.Value, refs, out _));
        Assert.Equal(-Errno.ENOMEM, Export(P0, gd, GntDevIoctl.GNTDEV_DMA_FLAG_WC, DomU.Id.Value, refs, out _));
        var bad = Enumerable.Repeat(99_999u, refs.Length).ToArray();
        Assert.Equal(-Errno.ENOMEM, Export(P0, gd, GntDevIoctl.GNTDEV_DMA_FLAG_WC, DomU.Id.Value, bad, out _));   // allocation before mapping
        Assert.Equal(ramFree, Ram.FreeCount);
        AssertNotMapped(g);
        Assert.Equal(1, P0.OpenFdCount);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void EX08_NewFdCloexecSizeAndDataOffset()
    {
        var g = Share(3);
        int gd = Open(P0, GntDev);
        int spare = P0.Dup(gd);
        Assert.Equal(0, P0.Close(spare));           // leave a hole: the export takes the lowest free fd
        int fd = ExportOk(gd, g);
        Assert.Equal(spare, fd);
        Assert.True(P0.IsCloseOnExec(fd));
        Assert.Equal(3 * 4096, P0.Lseek(fd, 0, Posix.SEEK_END));
        Assert.Equal(0, P0.Lseek(fd, 0, Posix.SEEK_SET));
        var buf = GetBuf(P0, fd);
        Assert.Equal(3 * 4096, buf.Size);
        var att = buf.Attach(new DmaDevice(Dom0.Kernel, "d"), out _)!;
        var t = buf.MapAttachment(att, DmaDirection.ToDevice, out _)!;
        Assert.Equal(0, t.Segments[0].Offset);
        Assert.Equal(3 * 4096, t.TotalLength);
        buf.Detach(att);
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX08_ReadBackStructHasFdAndUntouchedFields()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        var arg = ExpArg(0x8000_0000u, DomU.Id.Value, g.Refs);
        Assert.Equal(0, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, arg));
        var op = Read<ioctl_gntdev_dmabuf_exp_from_refs>(arg);
        Assert.Equal(0x8000_0000u, op.flags);
        Assert.Equal(2u, op.count);
        Assert.Equal((uint)DomU.Id.Value, op.domid);
        Assert.Equal(g.Refs[0], op.refs);
        Assert.True(P0.IsCloseOnExec((int)op.fd));
        Assert.Equal(0, P0.Close((int)op.fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX09_GranterShowsReadingWritingWhileBufferLives()
    {
        var g = Share(3);
        int gd = Open(P0, GntDev);
        AssertNotMapped(g);
        int fd = ExportOk(gd, g, GntDevIoctl.GNTDEV_DMA_FLAG_WC);
        AssertMappedByExport(g);
        var buf = GetBuf(P0, fd);
        Assert.Equal(0, P0.Close(fd));
        AssertMappedByExport(g);                    // an in-kernel reference keeps it
        buf.Put();
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX10_MapCachingDirectionsAndDetach()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var buf = GetBuf(P0, fd);
        var dev = new DmaDevice(Dom0.Kernel, "gpu", DmaTranslation.Iommu);
        var att = buf.Attach(dev, out int e)!;
        Assert.Equal(0, e);
        Assert.Equal(0, dev.IommuMappedPages);                               // nothing mapped at attach

        Assert.Null(buf.MapAttachment(att, DmaDirection.None, out e));
        Assert.Equal(-Errno.EINVAL, e);                                       // DMA_NONE
        var t1 = buf.MapAttachment(att, DmaDirection.ToDevice, out e)!;
        Assert.Equal(0, e);
        Assert.Equal(2, dev.IommuMappedPages);
        var t2 = buf.MapAttachment(att, DmaDirection.ToDevice, out e)!;
        Assert.Same(t1, t2);                                                  // cached
        Assert.Equal(2, dev.IommuMappedPages);
        Assert.Null(buf.MapAttachment(att, DmaDirection.FromDevice, out e));
        Assert.Equal(-Errno.EBUSY, e);
        Assert.Null(buf.MapAttachment(att, DmaDirection.Bidirectional, out e));
        Assert.Equal(-Errno.EBUSY, e);
        Assert.Null(buf.MapAttachment(att, DmaDirection.None, out e));
        Assert.Equal(-Errno.EINVAL, e);

        buf.UnmapAttachment(att, t1, DmaDirection.ToDevice);
        Assert.Equal(2, dev.IommuMappedPages);                               // unmap keeps the mapping
        Assert.Same(t1, buf.MapAttachment(att, DmaDirection.ToDevice, out _));
        buf.UnmapAttachment(att, t1, DmaDirection.ToDevice);
        buf.Detach(att);
        Assert.Equal(0, dev.IommuMappedPages);                               // detach unmaps
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX10_AttachAcceptsAnyDevice_TwoAttachmentsIndependent()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var buf = GetBuf(P0, fd);
        var dev = new DmaDevice(Dom0.Kernel, "gpu", DmaTranslation.Iommu);
        var narrow = new DmaDevice(Dom0.Kernel, "dma32", DmaTranslation.Direct, dmaMask: 0xFFFF_FFFF);
        var a1 = buf.Attach(dev, out int e1)!;
        var a2 = buf.Attach(dev, out int e2)!;
        var a3 = buf.Attach(narrow, out int e3)!;
        Assert.Equal((0, 0, 0), (e1, e2, e3));
        Assert.Equal(3, buf.AttachmentCount);
        var t1 = buf.MapAttachment(a1, DmaDirection.ToDevice, out _)!;
        var t2 = buf.MapAttachment(a2, DmaDirection.FromDevice, out int e)!;  // other direction on another attachment: fine
        Assert.Equal(0, e);
        Assert.NotSame(t1, t2);
        Assert.NotEqual(t1.Segments[0].DmaAddress, t2.Segments[0].DmaAddress);
        Assert.Equal(4, dev.IommuMappedPages);
        buf.Detach(a1);
        Assert.Equal(2, dev.IommuMappedPages);
        var px = new byte[1];
        Assert.Equal(0, dev.DmaRead(t2.Segments[0].DmaAddress + 4096, px));   // a2 still works
        Assert.Equal(2, px[0]);
        Assert.Equal(-Errno.EFAULT, dev.DmaRead(t1.Segments[0].DmaAddress, px));
        buf.Detach(a2);
        buf.Detach(a3);                                                         // never mapped: fine
        Assert.Equal(0, dev.IommuMappedPages);
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Theory]
    [InlineData(DmaTranslation.Direct, 0xFFFFFUL)]          // 1 MiB mask: the pages lie above it
    [InlineData(DmaTranslation.Iommu, 0xFFFF_FFFFUL)]       // no IOVA space below the mask
    public void EX10_DmaMapFailureIsEnomem_AttachmentStaysUnmapped(DmaTranslation tr, ulong mask)
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        var buf = GetBuf(P0, fd);
        var dev = new DmaDevice(Dom0.Kernel, "narrow", tr, mask);
        var att = buf.Attach(dev, out int e)!;
        Assert.Equal(0, e);                                                   // attach accepts any device
        Assert.Null(buf.MapAttachment(att, DmaDirection.ToDevice, out e));
        Assert.Equal(-Errno.ENOMEM, e);
        Assert.Null(buf.MapAttachment(att, DmaDirection.FromDevice, out e));
        Assert.Equal(-Errno.ENOMEM, e);                                       // not EBUSY: nothing was cached
        buf.Detach(att);
        Assert.Equal(0, dev.IommuMappedPages);
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX11_NoMmap_SyncReturnsZero()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g);
        Assert.Equal(-Errno.EINVAL, P0.Mmap(fd, 0, 2 * 4096, Posix.PROT_READ | Posix.PROT_WRITE, Posix.MAP_SHARED));
        Assert.Equal(-Errno.EINVAL, P0.Mmap(fd, 0, 4096, Posix.PROT_READ, Posix.MAP_SHARED));
        Assert.Equal(0, P0.MappingCount);
        Assert.Equal(0, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_START | DmaBufIoctl.DMA_BUF_SYNC_RW));
        Assert.Equal(0, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_END | DmaBufIoctl.DMA_BUF_SYNC_READ));
        Assert.Equal(-Errno.EINVAL, Sync(P0, fd, DmaBufIoctl.DMA_BUF_SYNC_END));   // DB03 still applies
        var buf = GetBuf(P0, fd);
        Assert.Null(buf.Ops.BeginCpuAccess);
        Assert.Null(buf.Ops.EndCpuAccess);
        Assert.Null(buf.Ops.MmapPages);
        buf.Put();
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }

    [Fact]
    public void EX12_ClosingGntdevKeepsExportedGrantsMapped()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        int fd = ExportOk(gd, g, GntDevIoctl.GNTDEV_DMA_FLAG_WC);
        var buf = GetBuf(P0, fd);
        var scanout = new ScanoutImporter(Dom0.Kernel);
        Assert.Equal(0, scanout.Import(buf));
        Assert.Equal(0, P0.Close(gd));
        AssertMappedByExport(g);
        Assert.Contains(Host.CheckLeaks(), l => l.Contains("gntdev file", StringComparison.Ordinal));   // the context lives on
        g.Data[4096 + 9] = 0x42;
        Assert.Equal(0x42, scanout.ReadByte(4096 + 9));
        Assert.Equal(0, P0.Close(fd));
        AssertMappedByExport(g);
        scanout.Release(buf);
        buf.Put();
        AssertNotMapped(g);
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void EX13_AfterLastReferenceFlagsClearAndPagesBack()
    {
        var g = Share(4);
        int gd = Open(P0, GntDev);
        foreach (uint flags in new uint[] { 0, GntDevIoctl.GNTDEV_DMA_FLAG_WC, GntDevIoctl.GNTDEV_DMA_FLAG_COHERENT })
        {
            int ram = Ram.FreeCount, unpop = Unpop.FreeCount;
            int fd = ExportOk(gd, g, flags);
            var buf = GetBuf(P0, fd);
            Assert.Equal(0, P0.Close(fd));
            Assert.False(buf.Released);
            AssertMappedByExport(g);
            buf.Put();
            Assert.True(buf.Released);
            AssertNotMapped(g);
            Assert.Equal(ram, Ram.FreeCount);
            Assert.Equal(unpop, Unpop.FreeCount);
            Assert.Equal(0, Dom0.Domain.MapTrackInUse);
            Assert.Equal(0, Dom0.Domain.P2M.CountForeign());
            Assert.Equal(-Errno.ENOENT, Wait(P0, gd, fd, 0));
        }
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }

    [Fact]
    public void EX13_ManyExportsOfTheSameRefsAllFreed()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        var fds = new List<int>();
        for (int i = 0; i < 5; i++) fds.Add(ExportOk(gd, g, (uint)(i % 3)));
        Assert.All(Flags(g), f => Assert.Equal(Gtf.permit_access | Gtf.reading | Gtf.writing, f));
        foreach (int fd in fds) Assert.Equal(0, P0.Close(fd));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }
}

/// <summary>EX01: x86 PV dom0 (use_ptemod).</summary>
public sealed class ExportPvTests() : DmaBufTest(null, null, new DomainConfig { Type = DomainType.X86Pv })
{
    [Fact]
    public void EX01_PvDomainIsEinvalBeforeAnythingElse()
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        var unpop = Dom0.Kernel.Unpopulated;
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, DomU.Id.Value, g.Refs, out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, GntDevIoctl.GNTDEV_DMA_FLAG_WC, DomU.Id.Value, g.Refs, out _));
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 3, DomU.Id.Value, [], out _));              // before count/flags checks
        Assert.Equal(-Errno.EINVAL, P0.Ioctl(gd, GntDevIoctl.IOCTL_GNTDEV_DMABUF_EXP_FROM_REFS, []));  // before the copy (no EFAULT)
        AssertNotMapped(g);
        Assert.Equal(unpop.Count, unpop.FreeCount);
        Assert.Equal(1, P0.OpenFdCount);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }
}

/// <summary>EX02 with a lowered gntdev limit.</summary>
public sealed class ExportLimitTests() : DmaBufTest(null, new KernelOptions { GntDevLimit = 2 })
{
    [Fact]
    public void EX02_CountAboveModuleLimitIsEinval()
    {
        var g = Share(3);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.EINVAL, Export(P0, gd, 0, DomU.Id.Value, g.Refs, out _));
        AssertNotMapped(g);
        Assert.Equal(0, Export(P0, gd, 0, DomU.Id.Value, g.Refs[..2], out int fd));
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }
}

/// <summary>EX07: allocation failure (ballooned pages) and the process out of fds.</summary>
public sealed class ExportResourceTests() : DmaBufTest(null, new KernelOptions { MaxFdsPerProcess = 4 }, new DomainConfig { UnpopulatedPages = 8 })
{
    [Fact]
    public void EX07_OutOfBallooneedPagesIsEnomem()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        var refs = Enumerable.Repeat(g.Refs[0], 9).ToArray();
        Assert.Equal(-Errno.ENOMEM, Export(P0, gd, 0, DomU.Id.Value, refs, out _));
        var unpop = Dom0.Kernel.Unpopulated;
        Assert.Equal(unpop.Count, unpop.FreeCount);
        AssertNotMapped(g);
        Assert.Equal(0, Export(P0, gd, 0, DomU.Id.Value, refs[..8], out int fd));  // exactly the pool: fine
        Assert.Equal(0, P0.Close(fd));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(1u)]
    [InlineData(2u)]
    public void EX07_ProcessOutOfFds_IsEmfileWithNothingMapped(uint flags)
    {
        var g = Share(2);
        int gd = Open(P0, GntDev);
        var dups = new List<int>();
        while (true)
        {
            int d = P0.Dup(gd);
            if (d < 0) { Assert.Equal(-Errno.EMFILE, d); break; }
            dups.Add(d);
        }
        int ram = Dom0.Kernel.Ram.FreeCount;
        Assert.Equal(-Errno.EMFILE, Export(P0, gd, flags, DomU.Id.Value, g.Refs, out int fd));
        Assert.Equal(-1, fd);
        AssertNotMapped(g);
        Assert.Equal(ram, Dom0.Kernel.Ram.FreeCount);
        Assert.Equal(Dom0.Kernel.Unpopulated.Count, Dom0.Kernel.Unpopulated.FreeCount);
        Assert.Equal(0, Dom0.Domain.MapTrackInUse);
        Assert.Equal(4, P0.OpenFdCount);
        Assert.Equal(0, P0.Close(dups[0]));
        fd = ExportOk(gd, g, flags);                  // with a free fd it works again
        Assert.Equal(dups[0], fd);
        Assert.Equal(0, P0.Close(fd));
        foreach (int d in dups.Skip(1)) Assert.Equal(0, P0.Close(d));
        Assert.Equal(0, P0.Close(gd));
        g.Close();
        AssertNoLeaks();
    }
}

/// <summary>Realxen: a kernel without CONFIG_XEN_GNTDEV_DMABUF answers ENOTTY.</summary>
public sealed class ExportDisabledTests() : DmaBufTest(null, new KernelOptions { GntDevDmaBuf = false })
{
    [Fact]
    public void EX01_Realxen_StockModuleWithoutDmabufIsEnotty()
    {
        var g = Share(1);
        int gd = Open(P0, GntDev);
        Assert.Equal(-Errno.ENOTTY, Export(P0, gd, 0, DomU.Id.Value, g.Refs, out _));
        Assert.Equal(-Errno.ENOTTY, Wait(P0, gd, 3, 0));
        Assert.Equal(-Errno.ENOTTY, Import(P0, gd, 3, 1, 1, out _));
        Assert.Equal(-Errno.ENOTTY, ImpRelease(P0, gd, 3));
        AssertNotMapped(g);
        Assert.Equal(0, P0.Close(gd));
        g.Close();
    }
}
