using System.Buffers.Binary;
using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Xenstore;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// The xenbus device of one kernel (<c>/dev/xen/xenbus</c>, XS07): every open file is a connection to the
/// host's xenstore daemon for this domain. write() collects request bytes in the file's one buffer of
/// XENSTORE_PAYLOAD_MAX bytes (header and payload together, as Linux 6.1): a write that would overflow it
/// is EINVAL and empties it, a header announcing more than fits is E2BIG; once a message is whole it goes
/// to the daemon and whatever else the same write carried is dropped (Linux acts on one message per
/// completed buffer and empties it). read() returns the reply and watch-event bytes as a stream (a read
/// may end inside a message), blocking until some arrive unless O_NONBLOCK; poll() reports POLLIN and
/// POLLRDNORM when bytes wait, nothing else (Linux never reports POLLOUT).
/// </summary>
/// <remarks>Lock: each file's <c>_lock</c> guards its partial request and its reply queue; readers wait on
/// it. The daemon delivers replies under its own lock and takes this one inside it (daemon &lt; xenbus
/// file); nothing is called with this lock held. Harder than Linux: Linux sends a request's payload from the
/// file's buffer after write() returns, so a request written before the previous reply was read may go out
/// with the newer request's bytes (a race this device cannot lose, since it answers inside write()); the
/// device counts such writes and the kernel's after-test check reports them as a client fault. Deviation: when the last fd of the file is closed, a
/// read blocked in another thread returns 0 (Linux lets it block until data arrives), so a client's
/// reader thread ends with its connection.</remarks>
internal sealed class XenbusDriver
{
    /// <summary>The device path.</summary>
    public const string Path = "/dev/xen/xenbus";

    private readonly GuestKernel _kernel;
    private readonly XenstoreDaemon _daemon;
    private int _openFiles;

    public XenbusDriver(GuestKernel kernel, XenstoreDaemon daemon)
    {
        _kernel = kernel;
        _daemon = daemon;
        kernel.RegisterDevice(Path, (_, _) =>
        {
            Interlocked.Increment(ref _openFiles);
            return new XenbusFile(this);
        });
        kernel.RegisterLeakCheck(CheckLeaks);
    }

    private int _pipelinedWrites;

    /// <summary>Requests written on a file while the reply of an earlier request of that file was not yet
    /// wholly read: on Linux such a request's payload can be overwritten before it is sent.</summary>
    public int PipelinedWrites => Volatile.Read(ref _pipelinedWrites);

    /// <summary>Clears <see cref="PipelinedWrites"/> (for a test that pipelines on purpose).</summary>
    public void ForgivePipelinedWrites() => Volatile.Write(ref _pipelinedWrites, 0);

    private IEnumerable<string> CheckLeaks()
    {
        if (Volatile.Read(ref _openFiles) != 0) yield return $"{_kernel.Domain}: {_openFiles} xenbus file(s) open";
        if (PipelinedWrites != 0)
            yield return $"{_kernel.Domain}: {PipelinedWrites} xenbus request(s) written before the previous reply was read (Linux may send them with the wrong payload)";
    }

    private sealed class XenbusFile : KernelFile
    {
        private readonly object _lock = new();
        private readonly XenbusDriver _driver;
        private readonly XenstoreConnection _connection;
        private readonly Queue<ReadOnlyMemory<byte>> _replies = new();
        private readonly byte[] _request = new byte[XsWire.XENSTORE_PAYLOAD_MAX];   // header and payload share it, as in Linux
        private int _requestLength;
        private int _unreadReplies;   // replies (not watch events) queued and not yet wholly read
        private int _headOffset;   // bytes of _replies.Peek() already read
        private bool _closed;

        public XenbusFile(XenbusDriver driver)
        {
            _driver = driver;
            _connection = driver._daemon.Connect(driver._kernel.Domain.Id, Deliver);
        }

        /// <summary>Called by the daemon under its lock: queue, wake readers and pollers.</summary>
        private void Deliver(ReadOnlyMemory<byte> message)
        {
            lock (_lock)
            {
                _replies.Enqueue(message);
                if (!IsWatchEvent(message.Span)) _unreadReplies++;
                Monitor.PulseAll(_lock);
            }
            _driver._kernel.PollQueue.Wake();
        }

        private static bool IsWatchEvent(ReadOnlySpan<byte> message) =>
            message.Length >= XsWire.HeaderSize && BinaryPrimitives.ReadUInt32LittleEndian(message) == XsWire.XS_WATCH_EVENT;

        public override long Write(GuestProcess caller, ReadOnlySpan<byte> buffer)
        {
            byte[] message;
            lock (_lock)
            {
                if (_closed) return -Errno.EBADF;
                if (buffer.IsEmpty) return 0;
                if (buffer.Length > _request.Length - _requestLength)
                {
                    _requestLength = 0;   // as Linux: a write that cannot be buffered empties the buffer
                    return -Errno.EINVAL;
                }
                buffer.CopyTo(_request.AsSpan(_requestLength));
                _requestLength += buffer.Length;
                if (_requestLength < XsWire.HeaderSize) return buffer.Length;
                uint len = BinaryPrimitives.ReadUInt32LittleEndian(_request.AsSpan(12));
                if (len > (uint)(_request.Length - XsWire.HeaderSize))
                {
                    _requestLength = 0;   // as Linux: a message that can never fit is refused and dropped
                    return -Errno.E2BIG;
                }
                int whole = XsWire.HeaderSize + (int)len;
                if (_requestLength < whole) return buffer.Length;
                // One message per completed buffer; bytes after it in the same write are dropped, as Linux does.
                message = _request.AsSpan(0, whole).ToArray();
                _requestLength = 0;
                if (_unreadReplies > 0) Interlocked.Increment(ref _driver._pipelinedWrites);
            }
            int rc = _connection.Submit(message);
            return rc < 0 ? rc : buffer.Length;
        }

        public override long Read(GuestProcess caller, Span<byte> buffer)
        {
            if (buffer.IsEmpty) return 0;
            lock (_lock)
            {
                while (_replies.Count == 0)
                {
                    if (_closed) return 0;
                    if ((OpenFlags & Posix.O_NONBLOCK) != 0) return -Errno.EAGAIN;
                    var kernel = _driver._kernel;
                    if (kernel.IsHalted) return -Errno.EIO;   // the domain was destroyed (GuestKernel.Halt)
                    // Unregister, not Dispose: Dispose would wait for a running callback, which needs this lock.
                    var halt = kernel.HaltToken.UnsafeRegister(static o => { lock (o!) Monitor.PulseAll(o); }, _lock);
                    try { if (!halt.Token.IsCancellationRequested) Monitor.Wait(_lock); }
                    finally { halt.Unregister(); }
                }
                int done = 0;
                while (done < buffer.Length && _replies.Count > 0)
                {
                    var head = _replies.Peek().Span[_headOffset..];
                    int n = Math.Min(head.Length, buffer.Length - done);
                    head[..n].CopyTo(buffer[done..]);
                    done += n;
                    _headOffset += n;
                    if (_headOffset == _replies.Peek().Length)
                    {
                        if (!IsWatchEvent(_replies.Dequeue().Span)) _unreadReplies--;
                        _headOffset = 0;
                    }
                }
                return done;
            }
        }

        public override short Poll()
        {
            lock (_lock) return (short)(_replies.Count > 0 ? Posix.POLLIN | Posix.POLLRDNORM : 0);
        }

        protected override void OnLastUserReference()
        {
            lock (_lock)
            {
                _closed = true;
                Monitor.PulseAll(_lock);
            }
        }

        protected override void Release()
        {
            _connection.Dispose();
            lock (_lock)
            {
                _closed = true;
                _replies.Clear();
                _unreadReplies = 0;
                Monitor.PulseAll(_lock);
            }
            Interlocked.Decrement(ref _driver._openFiles);
        }
    }
}
