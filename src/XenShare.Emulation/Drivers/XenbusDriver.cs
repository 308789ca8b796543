using System.Buffers.Binary;
using XenShare.Abi;
using XenShare.Emulation.Kernel;
using XenShare.Emulation.Xenstore;

namespace XenShare.Emulation.Drivers;

/// <summary>
/// The xenbus device of one kernel (<c>/dev/xen/xenbus</c>, XS07): every open file is a connection to the
/// host's xenstore daemon for this domain. write() takes request bytes and hands each whole message
/// (header + payload) to the daemon; read() returns the reply and watch-event bytes as a stream (a read
/// may end inside a message), blocking until some arrive unless O_NONBLOCK; poll() reports POLLIN when
/// bytes wait.
/// </summary>
/// <remarks>Lock: each file's <c>_lock</c> guards its partial request and its reply queue; readers wait on
/// it. The daemon delivers replies under its own lock and takes this one inside it (daemon &lt; xenbus
/// file); nothing is called with this lock held. Deviation: when the last fd of the file is closed, a
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
        kernel.RegisterLeakCheck(() => Volatile.Read(ref _openFiles) == 0 ? [] : [$"{_kernel.Domain}: {_openFiles} xenbus file(s) open"]);
    }

    private sealed class XenbusFile : KernelFile
    {
        private readonly object _lock = new();
        private readonly XenbusDriver _driver;
        private readonly XenstoreConnection _connection;
        private readonly Queue<ReadOnlyMemory<byte>> _replies = new();
        private readonly byte[] _request = new byte[XsWire.HeaderSize + XsWire.XENSTORE_PAYLOAD_MAX];
        private int _requestLength;
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
                Monitor.PulseAll(_lock);
            }
            _driver._kernel.PollQueue.Wake();
        }

        public override long Write(GuestProcess caller, ReadOnlySpan<byte> buffer)
        {
            int taken = 0;
            while (taken < buffer.Length)
            {
                byte[]? message = null;
                lock (_lock)
                {
                    if (_closed) return -Errno.EBADF;
                    // Fill the header first, then exactly the payload it announces.
                    int want = _requestLength < XsWire.HeaderSize
                        ? XsWire.HeaderSize - _requestLength
                        : XsWire.HeaderSize + (int)BinaryPrimitives.ReadUInt32LittleEndian(_request.AsSpan(12)) - _requestLength;
                    int n = Math.Min(want, buffer.Length - taken);
                    buffer.Slice(taken, n).CopyTo(_request.AsSpan(_requestLength));
                    _requestLength += n;
                    taken += n;
                    if (_requestLength >= XsWire.HeaderSize)
                    {
                        uint len = BinaryPrimitives.ReadUInt32LittleEndian(_request.AsSpan(12));
                        if (len > XsWire.XENSTORE_PAYLOAD_MAX)
                        {
                            _requestLength = 0;   // as Linux: the request is refused and dropped
                            return -Errno.EINVAL;
                        }
                        if (_requestLength == XsWire.HeaderSize + (int)len)
                        {
                            message = _request.AsSpan(0, _requestLength).ToArray();
                            _requestLength = 0;
                        }
                    }
                }
                if (message is not null)
                {
                    int rc = _connection.Submit(message);
                    if (rc < 0) return rc;
                }
            }
            return taken;
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
                    if (_headOffset == _replies.Peek().Length) { _replies.Dequeue(); _headOffset = 0; }
                }
                return done;
            }
        }

        public override short Poll()
        {
            lock (_lock) return (short)(Posix.POLLOUT | (_replies.Count > 0 ? Posix.POLLIN : 0));
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
                Monitor.PulseAll(_lock);
            }
            Interlocked.Decrement(ref _driver._openFiles);
        }
    }
}
