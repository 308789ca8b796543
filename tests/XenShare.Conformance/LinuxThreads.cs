using System.Globalization;
using System.Runtime.InteropServices;

namespace XenShare.Conformance;

/// <summary>What the Linux kernel says about a thread of this process: the barrier EW04 needs on a real
/// domain to know that a waiter is really blocked inside EXP_WAIT_RELEASED before it releases the buffer.</summary>
public static partial class LinuxThreads
{
    [LibraryImport("libc", EntryPoint = "gettid")]
    private static partial int GetTidNative();

    /// <summary>The calling thread's kernel thread id.</summary>
    public static int GetTid() => GetTidNative();

    /// <summary>True when thread <paramref name="tid"/> of this process sleeps uninterruptibly (state D, as
    /// gntdev's wait_for_completion_timeout does) inside an ioctl, by /proc/self/task/&lt;tid&gt;/stat and,
    /// where the kernel provides it, /proc/self/task/&lt;tid&gt;/syscall.</summary>
    public static bool IsBlockedInIoctl(int managedThreadId, int tid)
    {
        _ = managedThreadId;
        try
        {
            string stat = File.ReadAllText($"/proc/self/task/{tid}/stat");
            int close = stat.LastIndexOf(')');
            if (close < 0 || close + 2 >= stat.Length || stat[close + 2] != 'D') return false;
            string syscall;
            try { syscall = File.ReadAllText($"/proc/self/task/{tid}/syscall"); }
            catch (IOException) { return true; }
            catch (UnauthorizedAccessException) { return true; }
            int space = syscall.IndexOf(' ');
            if (!int.TryParse(space < 0 ? syscall.Trim() : syscall[..space], NumberStyles.Integer, CultureInfo.InvariantCulture, out int nr)) return false;
            int ioctl = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? 16 : 29;   // x86-64 / arm64
            return nr == ioctl;
        }
        catch (IOException) { return false; }
        catch (UnauthorizedAccessException) { return false; }
    }
}
