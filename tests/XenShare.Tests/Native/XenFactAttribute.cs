using XenShare.Native;

namespace XenShare.Tests.Native;

/// <summary>A fact that runs only on a Xen guest (where /dev/xen/gntdev exists) and is skipped elsewhere.</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class XenFactAttribute : FactAttribute
{
    public const string SkipReason = "needs /dev/xen/gntdev (a Xen guest): run dotnet test inside a Xen domain; the real-Xen stage does not run these xunit tests (it runs tools/conformance-runner)";

    public XenFactAttribute()
    {
        if (!NativeXen.IsXenGuest)
        {
            Skip = SkipReason;
        }
    }
}
