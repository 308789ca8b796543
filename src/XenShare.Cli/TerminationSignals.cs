using System.Runtime.InteropServices;

namespace XenShare.Cli;

/// <summary>
/// SIGINT (Ctrl+C) and SIGTERM for the command being run. A command that takes a cancellation token (the demo, the
/// xenstore daemon, the display backend) is asked to stop through <see cref="Token"/>: it tears down cleanly and the
/// process then exits with 128 + the signal's number, as shells report a process ended by a signal (130 for SIGINT, 143
/// for SIGTERM). A second signal, or a teardown that takes longer than the grace period, ends the process at once with
/// the same code. A command that takes no token (bench, abi, info, help) gets the runtime's default: the signal ends it.
/// </summary>
internal sealed class TerminationSignals : IDisposable
{
    /// <summary>Exit code after SIGINT: 128 + 2.</summary>
    public const int InterruptExitCode = 130;

    /// <summary>Exit code after SIGTERM: 128 + 15.</summary>
    public const int TerminateExitCode = 143;

    private readonly CancellationTokenSource _stop = new();
    private readonly bool _cancellable;
    private readonly TimeSpan _grace;
    private readonly PosixSignalRegistration _interrupt;
    private readonly PosixSignalRegistration _terminate;
    private Timer? _deadline;
    private int _exitCode;

    /// <summary>Registers for SIGINT and SIGTERM.</summary>
    /// <param name="cancellable">Whether the command stops on <see cref="Token"/>; when false the signals keep their
    /// default action.</param>
    /// <param name="grace">How long the command may take to stop before the process exits anyway.</param>
    public TerminationSignals(bool cancellable, TimeSpan grace)
    {
        _cancellable = cancellable;
        _grace = grace;
        _interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        _terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
    }

    /// <summary>Cancelled at the first SIGINT or SIGTERM.</summary>
    public CancellationToken Token => _stop.Token;

    /// <summary>The exit code the signal received calls for (<see cref="InterruptExitCode"/> or
    /// <see cref="TerminateExitCode"/>), or 0 when none was received.</summary>
    public int SignalExitCode => Volatile.Read(ref _exitCode);

    /// <summary>The process's exit code for a command that returned <paramref name="commandExitCode"/>: after a signal,
    /// 128 + its number - unless the command reported a failure of its own (a code other than 0 and 130, the
    /// commands' "stopped" code).</summary>
    public int ExitCode(int commandExitCode) =>
        SignalExitCode != 0 && commandExitCode is 0 or InterruptExitCode ? SignalExitCode : commandExitCode;

    private void OnSignal(PosixSignalContext context)
    {
        if (!_cancellable) return;   // the default action: the runtime ends the process
        int code = context.Signal == PosixSignal.SIGTERM ? TerminateExitCode : InterruptExitCode;
        if (Interlocked.CompareExchange(ref _exitCode, code, 0) != 0)
        {
            Environment.Exit(Volatile.Read(ref _exitCode));   // a second signal: stop waiting for the teardown
            return;
        }
        context.Cancel = true;
        _deadline = new Timer(_ => Environment.Exit(code), null, _grace, Timeout.InfiniteTimeSpan);
        _stop.Cancel();
    }

    /// <summary>Unregisters the handlers.</summary>
    public void Dispose()
    {
        _interrupt.Dispose();
        _terminate.Dispose();
        _deadline?.Dispose();
        _stop.Dispose();
    }
}
