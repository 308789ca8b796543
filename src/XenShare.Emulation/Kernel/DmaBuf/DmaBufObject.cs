using System.Runtime.InteropServices;
using XenShare.Abi;
using XenShare.Emulation.Kernel.Dma;

namespace XenShare.Emulation.Kernel.DmaBuf;

/// <summary>
/// A dma-buf (struct dma_buf) and its file: it lives while any fd, any mmap or any in-kernel reference
/// holds it (DB01), and the exporter's release runs once, after the last one goes. Importers attach
/// devices and map attachments with a direction (DB05). The file answers lseek (DB02), SYNC (DB03) and
/// mmap (DB04).
/// </summary>
/// <remarks>Lock: the attachment list itself guards it (a leaf apart from exporter callbacks, which are
/// called without it).</remarks>
public sealed class DmaBufObject
{
    private readonly List<DmaBufAttachment> _attachments = new();   // also the lock
    private readonly DmaBufFile _file;
    // Created by the first WhenReleased (most buffers are never waited on this way: P7b). Dekker with
    // _releaseDone: the releaser sets the flag then reads the source, a waiter installs the source then reads
    // the flag, each with a full fence between, so one of them completes it.
    private TaskCompletionSource? _released;
    private int _releaseDone;

    private DmaBufObject(GuestKernel kernel, DmaBufOps ops, long size, object? exporterData)
    {
        Kernel = kernel;
        Ops = ops;
        Size = size;
        ExporterData = exporterData;
        _file = new DmaBufFile(this);
    }

    /// <summary>The kernel.</summary>
    public GuestKernel Kernel { get; }

    /// <summary>The exporter's ops.</summary>
    public DmaBufOps Ops { get; }

    /// <summary>Size in bytes.</summary>
    public long Size { get; }

    /// <summary>The exporter's private data.</summary>
    public object? ExporterData { get; }

    /// <summary>Name set by DMA_BUF_SET_NAME.</summary>
    public string? Name { get; private set; }

    /// <summary>References (fds, mmaps, in-kernel gets).</summary>
    public int RefCount => _file.RefCount;

    /// <summary>Live attachments.</summary>
    public int AttachmentCount { get { lock (_attachments) return _attachments.Count; } }

    /// <summary>True once the exporter's release has run.</summary>
    public bool Released { get; private set; }

    /// <summary>Completes once the exporter's release has run (the last reference went): what an exporter
    /// waits on before it reuses the memory, the kernel-side counterpart of gntdev's EXP_WAIT_RELEASED.</summary>
    public Task WhenReleased
    {
        get
        {
            var source = Volatile.Read(ref _released);
            if (source is null)
            {
                var created = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                source = Interlocked.CompareExchange(ref _released, created, null) ?? created;
                if (Volatile.Read(ref _releaseDone) != 0) source.TrySetResult();
            }
            return source.Task;
        }
    }

    internal KernelFile File => _file;

    /// <summary>dma_buf_export: creates a buffer holding one reference (to be installed as an fd or put).
    /// EINVAL when a mandatory op is missing or the size is not positive.</summary>
    public static DmaBufObject? Export(GuestKernel kernel, DmaBufOps ops, long size, object? exporterData, out int errno)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(ops);
        errno = 0;
        if (ops.Map is null || ops.Unmap is null || ops.Release is null || size <= 0) { errno = -Errno.EINVAL; return null; }
        return new DmaBufObject(kernel, ops, size, exporterData);
    }

    /// <summary>dma_buf_fd: installs the buffer's reference at a new fd of <paramref name="process"/>.</summary>
    public int InstallFd(GuestProcess process, bool cloexec = true)
    {
        ArgumentNullException.ThrowIfNull(process);
        int fd = process.ReserveFd(cloexec);
        if (fd < 0) return fd;
        process.InstallFd(fd, _file);
        return fd;
    }

    /// <summary>dma_buf_get: a reference to the dma-buf at an fd: -EBADF if not open, -EINVAL if not a dma-buf.</summary>
    public static DmaBufObject? Get(GuestProcess process, int fd, out int errno)
    {
        ArgumentNullException.ThrowIfNull(process);
        errno = 0;
        var f = process.GetFile(fd);
        if (f is null) { errno = -Errno.EBADF; return null; }
        if (f is not DmaBufFile df) { f.Put(); errno = -Errno.EINVAL; return null; }
        return df.Buffer;
    }

    /// <summary>get_dma_buf: takes another in-kernel reference.</summary>
    public void GetReference() => _file.Get();

    /// <summary>dma_buf_put: drops a reference; the last one runs the exporter's release.</summary>
    public void Put() => _file.Put();

    /// <summary>dma_buf_attach: the exporter may refuse with -errno.</summary>
    public DmaBufAttachment? Attach(DmaDevice device, out int errno)
    {
        ArgumentNullException.ThrowIfNull(device);
        var att = new DmaBufAttachment(this, device);
        errno = Ops.Attach?.Invoke(att) ?? 0;
        if (errno < 0) return null;
        lock (_attachments) _attachments.Add(att);
        return att;
    }

    /// <summary>dma_buf_detach.</summary>
    public void Detach(DmaBufAttachment attachment)
    {
        ArgumentNullException.ThrowIfNull(attachment);
        lock (_attachments)
        {
            if (attachment.Detached || !_attachments.Remove(attachment)) throw new InvalidOperationException("attachment is not attached");
            attachment.Detached = true;
        }
        Ops.Detach?.Invoke(attachment);
    }

    /// <summary>dma_buf_map_attachment: the exporter's table for this device and direction, or null with -errno.</summary>
    public SgTable? MapAttachment(DmaBufAttachment attachment, DmaDirection direction, out int errno)
    {
        ArgumentNullException.ThrowIfNull(attachment);
        if (attachment.Detached) { errno = -Errno.EINVAL; return null; }
        var t = Ops.Map!(attachment, direction, out errno);
        if (t is null && errno == 0) errno = -Errno.ENOMEM;   // the core turns a NULL table into ENOMEM
        return t;
    }

    /// <summary>dma_buf_unmap_attachment.</summary>
    public void UnmapAttachment(DmaBufAttachment attachment, SgTable table, DmaDirection direction)
    {
        ArgumentNullException.ThrowIfNull(attachment);
        Ops.Unmap!(attachment, table, direction);
    }

    private void OnRelease()
    {
        Released = true;
        try
        {
            Ops.Release!(this);
        }
        finally
        {
            Interlocked.Exchange(ref _releaseDone, 1);
            Volatile.Read(ref _released)?.TrySetResult();
        }
    }

    private int Sync(ulong flags)
    {
        if ((flags & ~DmaBufIoctl.DMA_BUF_SYNC_VALID_FLAGS_MASK) != 0) return -Errno.EINVAL;       // DB03
        if ((flags & DmaBufIoctl.DMA_BUF_SYNC_RW) == 0) return -Errno.EINVAL;
        var dir = (flags & DmaBufIoctl.DMA_BUF_SYNC_RW) switch
        {
            DmaBufIoctl.DMA_BUF_SYNC_READ => DmaDirection.FromDevice,
            DmaBufIoctl.DMA_BUF_SYNC_WRITE => DmaDirection.ToDevice,
            _ => DmaDirection.Bidirectional,
        };
        if ((flags & DmaBufIoctl.DMA_BUF_SYNC_END) != 0) return Ops.EndCpuAccess?.Invoke(this, dir) ?? 0;
        return Ops.BeginCpuAccess?.Invoke(this, dir) ?? 0;
    }

    private sealed class DmaBufFile(DmaBufObject buffer) : KernelFile, IVmaOwner
    {
        public DmaBufObject Buffer => buffer;

        public override long Lseek(long offset, int whence)
        {
            if (whence != Posix.SEEK_SET && whence != Posix.SEEK_END) return -Errno.EINVAL;   // DB02
            if (offset != 0) return -Errno.EINVAL;
            return whence == Posix.SEEK_END ? buffer.Size : 0;
        }

        public override int Ioctl(GuestProcess caller, uint request, Span<byte> arg)
        {
            if (request == DmaBufIoctl.DMA_BUF_IOCTL_SYNC)
            {
                if (arg.Length < 8) return -Errno.EFAULT;
                return buffer.Sync(MemoryMarshal.Read<ulong>(arg));
            }
            if (request == DmaBufIoctl.DMA_BUF_SET_NAME_A || request == DmaBufIoctl.DMA_BUF_SET_NAME_B)
            {
                int width = request == DmaBufIoctl.DMA_BUF_SET_NAME_A ? 4 : 8;
                if (arg.Length < width) return -Errno.EFAULT;
                long ptr = width == 4 ? MemoryMarshal.Read<uint>(arg) : MemoryMarshal.Read<long>(arg);
                return buffer.SetName(caller, ptr);
            }
            return -Errno.ENOTTY;                                                             // DB03
        }

        public override int Mmap(GuestProcess caller, Vma vma)
        {
            if (buffer.Ops.MmapPages is null) return -Errno.EINVAL;                           // DB04
            if (vma.Offset + vma.Length > buffer.Size) return -Errno.EINVAL;
            var pages = new GuestFrame[vma.PageCount];
            int rc = buffer.Ops.MmapPages(buffer, vma.Offset >> XenPage.Shift, pages);
            if (rc < 0) return rc;
            vma.Pages = pages;
            vma.Owner = this;
            return 0;
        }

        void IVmaOwner.Close(Vma vma) { }

        protected override void Release() => buffer.OnRelease();
    }

    private int SetName(GuestProcess caller, long ptr)
    {
        const int max = 32;
        var name = new System.Text.StringBuilder();
        Span<byte> one = stackalloc byte[1];
        for (int i = 0; i < max; i++)
        {
            int rc = caller.CopyFromUser(ptr + i, one);
            if (rc < 0) return rc;
            if (one[0] == 0) { Name = name.ToString(); return 0; }
            name.Append((char)one[0]);
        }
        return -Errno.EINVAL;
    }
}
