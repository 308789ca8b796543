using System.Buffers.Binary;
using XenShare.Abi;

namespace XenShare.Tests.Xenstore;

/// <summary>
/// A guest process whose only device is <c>/dev/xen/xenbus</c>, wired to a <see cref="FakeXenstored"/>
/// (XS07): each write must be exactly one whole request; read blocks until reply bytes exist and hands
/// them out in deliberately odd slices (<see cref="ReadSlices"/>, cycling), so messages arrive split and
/// several at once; close wakes a blocked read. It counts the writes Linux's device could corrupt
/// (<see cref="PipelinedWrites"/>): a request written while an earlier one's reply is not yet read, whose
/// payload Linux may still have to send from the file's one message buffer that the new write overwrites.
/// </summary>
internal sealed class FakeXenbusProcess(FakeXenstored daemon) : IGuestProcess
{
    private const int XenbusFd = 7;
    private readonly object _gate = new();
    private readonly List<byte> _output = [];
    private FakeXenstored.Connection? _connection;
    private bool _open;
    private bool _closed;
    private int _slice;
    private long _delivered;                                  // bytes handed to the output so far
    private long _consumed;                                   // bytes the client has read so far
    private readonly Queue<long> _replyEnds = new();          // stream offsets where unread replies end

    /// <summary>The most bytes each successive read returns (cycled).</summary>
    public int[] ReadSlices { get; set; } = [1, 5, 16, 3, 4096, 7, 29, 2, 100];

    /// <summary>An errno Open fails with, or 0.</summary>
    public int OpenErrno { get; set; }

    public int Writes { get; private set; }

    public int WritesNotOneMessage { get; private set; }

    public int Reads { get; private set; }

    /// <summary>Requests written while the reply of an earlier one was not yet wholly read (must stay 0 for a
    /// client that is safe on Linux's <c>/dev/xen/xenbus</c>).</summary>
    public int PipelinedWrites { get; private set; }

    /// <summary>The most requests that were awaiting their reply at once.</summary>
    public int MaxInFlight { get; private set; }

    private int _inFlight;

    public bool Closed { get { lock (_gate) return _closed; } }

    public string Description => "fake xenbus guest";

    public int Open(string path, int flags)
    {
        if (path != "/dev/xen/xenbus") return -Errno.ENOENT;
        if (OpenErrno != 0) return -OpenErrno;
        if ((flags & 3) != Posix.O_RDWR) return -Errno.EINVAL;
        lock (_gate)
        {
            if (_open) return -Errno.EBUSY;
            _open = true;
        }
        _connection = daemon.Attach(Deliver);
        return XenbusFd;
    }

    /// <summary>Raw bytes for the client to read (hostile replies).</summary>
    public void Deliver(byte[] bytes)
    {
        lock (_gate)
        {
            _output.AddRange(bytes);
            _delivered += bytes.Length;
            // Replies (not watch events) end a request's turn once the client has read them.
            if (bytes.Length >= 16 && BinaryPrimitives.ReadUInt32LittleEndian(bytes) != XsWire.XS_WATCH_EVENT)
                _replyEnds.Enqueue(_delivered);
            Monitor.PulseAll(_gate);
        }
    }

    public long Write(int fd, ReadOnlySpan<byte> buffer)
    {
        lock (_gate)
        {
            if (fd != XenbusFd || !_open || _closed) return -Errno.EBADF;
            Writes++;
            if (buffer.Length < 16 || buffer.Length != 16 + BinaryPrimitives.ReadUInt32LittleEndian(buffer[12..]))
            {
                WritesNotOneMessage++;
                return -Errno.EINVAL;
            }
            if (_inFlight > 0) PipelinedWrites++;
            MaxInFlight = Math.Max(MaxInFlight, ++_inFlight);
        }
        daemon.Handle(_connection!, buffer);
        return buffer.Length;
    }

    public long Read(int fd, Span<byte> buffer)
    {
        lock (_gate)
        {
            if (fd != XenbusFd || !_open) return -Errno.EBADF;
            while (_output.Count == 0 && !_closed) Monitor.Wait(_gate);
            if (_closed) return -Errno.EBADF;
            int n = Math.Min(Math.Min(buffer.Length, _output.Count), ReadSlices[_slice++ % ReadSlices.Length]);
            for (int i = 0; i < n; i++) buffer[i] = _output[i];
            _output.RemoveRange(0, n);
            _consumed += n;
            while (_replyEnds.Count > 0 && _replyEnds.Peek() <= _consumed)
            {
                _replyEnds.Dequeue();
                _inFlight--;
            }
            Reads++;
            return n;
        }
    }

    public int Close(int fd)
    {
        lock (_gate)
        {
            if (fd != XenbusFd || !_open || _closed) return -Errno.EBADF;
            _closed = true;
            Monitor.PulseAll(_gate);
        }
        if (_connection is not null) daemon.Detach(_connection);
        return 0;
    }

    public int Ioctl(int fd, uint request, Span<byte> arg) => -Errno.ENOTTY;

    public long Mmap(int fd, long offset, long length, int prot, int flags) => -Errno.ENODEV;

    public int Munmap(long address, long length) => -Errno.EINVAL;

    public long Lseek(int fd, long offset, int whence) => -Errno.ESPIPE;

    public int Dup(int fd) => -Errno.EBADF;

    public int Poll(Span<PollFd> fds, int timeoutMs) => -Errno.ENOSYS;

    public void Dispose()
    {
        lock (_gate)
        {
            _closed = true;
            Monitor.PulseAll(_gate);
        }
    }
}
