using XenShare.Displif;

namespace XenShare.Tests.Displif;

/// <summary>A slow importer: it dups each framebuffer's dma-buf fd at attach and keeps the dups after
/// detach until the test calls <see cref="LetGo"/> (what a compositor that still scans out does).</summary>
internal sealed class HoldingSink(IGuestProcess process) : IDisplaySink
{
    private readonly List<int> _held = [];

    public int Held { get { lock (_held) return _held.Count; } }

    public ValueTask AttachAsync(DisplayFramebuffer framebuffer, CancellationToken cancellationToken)
    {
        int fd = process.Dup(framebuffer.DmaBufFd);
        Assert.True(fd >= 0, "dup: " + fd);
        lock (_held) _held.Add(fd);
        return ValueTask.CompletedTask;
    }

    public ValueTask PresentAsync(int connector, DisplayFramebuffer framebuffer, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask DisableAsync(int connector, CancellationToken cancellationToken) => ValueTask.CompletedTask;

    public ValueTask DetachAsync(DisplayFramebuffer framebuffer) => ValueTask.CompletedTask;

    public void LetGo()
    {
        int[] fds;
        lock (_held)
        {
            fds = [.. _held];
            _held.Clear();
        }
        foreach (int fd in fds) process.Close(fd);
    }
}
