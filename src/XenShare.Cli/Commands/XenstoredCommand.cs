using System.CommandLine;
using System.Globalization;
using XenShare.Emulation;
using XenShare.Emulation.Hypervisor;
using XenShare.Emulation.Xenstore;

namespace XenShare.Cli.Commands;

/// <summary><c>xenshare xenstored --socket PATH [--guests N]</c>: boots an emulated host (dom0 and N guests,
/// each introduced in the store as the toolstack does) and serves its xenstore on a Unix socket, as dom0's
/// xenstored does, until Ctrl+C. Real clients connect with <c>XENSTORED_PATH=PATH</c>.</summary>
internal static class XenstoredCommand
{
    /// <summary>Creates the <c>xenstored</c> command.</summary>
    public static Command Create()
    {
        var socket = new Option<string>("--socket")
        {
            Description = "The Unix socket to serve on (a stale socket there is replaced; any other file is not).",
            Required = true,
        };
        var guests = new Option<int>("--guests")
        {
            Description = "Guests to create besides dom0 (0 to 16).",
            DefaultValueFactory = _ => 1,
        };
        guests.Validators.Add(r =>
        {
            int n = r.GetValueOrDefault<int>();
            if (n is < 0 or > 16) r.AddError("--guests must be between 0 and 16.");
        });
        var command = new Command("xenstored", "Serve an emulated host's xenstore on a Unix socket (dom0's xenstored) until Ctrl+C; real clients use XENSTORED_PATH.");
        command.Options.Add(socket);
        command.Options.Add(guests);
        command.SetAction(async (parseResult, cancellationToken) =>
            await RunAsync(parseResult.GetValue(socket)!, parseResult.GetValue(guests), parseResult.InvocationConfiguration.Output,
                parseResult.InvocationConfiguration.Error, cancellationToken).ConfigureAwait(false));
        return command;
    }

    /// <summary>Serves until <paramref name="cancellationToken"/> is cancelled; 0 then, 1 when the socket
    /// cannot be bound.</summary>
    internal static async Task<int> RunAsync(string path, int guestCount, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        using var host = new EmulatedHost(65536);
        for (int i = 0; i < guestCount; i++) host.CreateGuest(new DomainConfig { RamPages = 1024, UnpopulatedPages = 1024 });
        XenstoreSocketServer server;
        try
        {
            server = XenstoreSocketServer.Start(host.Xenstore, path);
        }
        catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or UnauthorizedAccessException)
        {
            await error.WriteLineAsync($"xenstored: cannot serve on {path}: {e.Message}").ConfigureAwait(false);
            return 1;
        }
        await using (server.ConfigureAwait(false))
        {
            await output.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"xenstored: serving the emulated host's store (dom0 + {guestCount} guest(s), {host.Xenstore.NodeCount} nodes) on {path}")).ConfigureAwait(false);
            await output.WriteLineAsync($"xenstored: try  XENSTORED_PATH={path} xenstore-ls /local/domain   (Ctrl+C stops)").ConfigureAwait(false);
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // Ctrl+C: stop serving.
            }
        }
        await output.WriteLineAsync("xenstored: stopped").ConfigureAwait(false);
        return 0;
    }
}
