using System.Diagnostics.CodeAnalysis;

// The CLI talks to emulated processes through the seam only (docs/design.md, issue 12): it holds them as
// IGuestProcess even where the concrete emulator type is known, which CA1859 would have it change.
[assembly: SuppressMessage("Performance", "CA1859:Use concrete types when possible for improved performance", Scope = "namespaceanddescendants", Target = "~N:XenShare.Cli",
    Justification = "The CLI reaches emulated processes through IGuestProcess, never the emulator's GuestProcess.")]
