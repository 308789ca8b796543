namespace XenShare.Conformance;

/// <summary>Outcome of one scenario.</summary>
public enum Outcome
{
    Pass,
    Fail,
    Skip,
}

/// <summary>The result of one scenario: outcome and a one-line message.</summary>
public readonly record struct ScenarioResult(Outcome Outcome, string Message)
{
    public static ScenarioResult Pass(string message = "ok") => new(Outcome.Pass, message);

    public static ScenarioResult Fail(string message) => new(Outcome.Fail, message);

    public static ScenarioResult Skip(string message) => new(Outcome.Skip, message);
}

/// <summary>
/// One conformance scenario: the spec IDs it shows (e.g. "EX05" or "EX09+EX13"), a name, and its body.
/// The IDs name only what the body checks on every backend it runs on. A check that needs the emulator's
/// probe (hypervisor state a real domain cannot read) lives in a separate, emulator-only scenario whose
/// key ends in "/..." (e.g. "EX06/entries"): it gets the probe as an argument and is reported as SKIP,
/// with its reason, where there is none - never folded into a PASS of the portable scenario.
/// </summary>
public sealed class ConformanceScenario
{
    public ConformanceScenario(string ids, string name, Action<ConformanceContext> body)
    {
        Ids = ids;
        Name = name;
        Body = body;
    }

    /// <summary>An emulator-only scenario: its body needs the probe; skipped with
    /// <paramref name="emulatorOnlyReason"/> where the context has none.</summary>
    public ConformanceScenario(string ids, string name, Action<ConformanceContext, IEmulatorProbe> body, string emulatorOnlyReason)
    {
        Ids = ids;
        Name = name;
        ProbeBody = body;
        EmulatorOnlyReason = emulatorOnlyReason;
    }

    /// <summary>Spec IDs joined by '+', e.g. "EX09+EX13".</summary>
    public string Ids { get; }

    public string Name { get; }

    public Action<ConformanceContext>? Body { get; }

    public Action<ConformanceContext, IEmulatorProbe>? ProbeBody { get; }

    /// <summary>Set for emulator-only scenarios: why a real domain cannot run it.</summary>
    public string? EmulatorOnlyReason { get; }

    /// <summary>Runs the scenario; never throws.</summary>
    public ScenarioResult Run(ConformanceContext context)
    {
        var probe = context.Probe;
        if (ProbeBody is not null && probe is null)
            return ScenarioResult.Skip("emulator-only: " + EmulatorOnlyReason);
        try
        {
            if (ProbeBody is not null) ProbeBody(context, probe!);
            else Body!(context);
            return ScenarioResult.Pass();
        }
        catch (ScenarioSkipException e)
        {
            return ScenarioResult.Skip(e.Message);
        }
        catch (Exception e)
        {
            string msg = e is ConformanceException ? e.Message : e.GetType().Name + ": " + e.Message;
            return ScenarioResult.Fail(msg.Replace('\n', ' ').Replace('\r', ' '));
        }
    }

    public override string ToString() => Ids + " " + Name;
}

/// <summary>A check of a scenario failed.</summary>
public sealed class ConformanceException : Exception
{
    public ConformanceException(string message) : base(message) { }

    public ConformanceException() { }

    public ConformanceException(string message, Exception inner) : base(message, inner) { }
}

/// <summary>Thrown by a scenario that cannot run in this context (said why).</summary>
public sealed class ScenarioSkipException : Exception
{
    public ScenarioSkipException(string message) : base(message) { }

    public ScenarioSkipException() { }

    public ScenarioSkipException(string message, Exception inner) : base(message, inner) { }
}
