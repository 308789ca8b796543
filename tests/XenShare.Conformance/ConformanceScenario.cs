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
/// <see cref="EmulatorOnlyReason"/> set means the scenario needs what a single real dom0 cannot provide
/// (a second domain, fault injection, hypervisor internals); it is skipped when
/// <see cref="ConformanceContext.Probe"/> is null.
/// </summary>
public sealed class ConformanceScenario
{
    public ConformanceScenario(string ids, string name, Action<ConformanceContext> body, string? emulatorOnlyReason = null)
    {
        Ids = ids;
        Name = name;
        Body = body;
        EmulatorOnlyReason = emulatorOnlyReason;
    }

    /// <summary>Spec IDs joined by '+', e.g. "EX09+EX13".</summary>
    public string Ids { get; }

    public string Name { get; }

    public Action<ConformanceContext> Body { get; }

    public string? EmulatorOnlyReason { get; }

    /// <summary>Runs the scenario; never throws.</summary>
    public ScenarioResult Run(ConformanceContext context)
    {
        if (EmulatorOnlyReason is not null && context.Probe is null)
            return ScenarioResult.Skip("emulator-only: " + EmulatorOnlyReason);
        try
        {
            Body(context);
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
