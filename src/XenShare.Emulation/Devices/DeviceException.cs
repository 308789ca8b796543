namespace XenShare.Emulation.Devices;

/// <summary>An emulated device's call failed with an errno (the in-process helpers of the device classes; a
/// process reaches the devices through their files and gets the errno as the call's result instead). The
/// emulator does not use the typed API's exception: it sits below the seam.</summary>
public sealed class DeviceException : Exception
{
    /// <summary>Creates the exception for a positive <paramref name="errno"/>.</summary>
    public DeviceException(int errno, string operation)
        : base($"{operation} failed: {Abi.Errno.Name(errno)} ({errno})")
    {
        Errno = errno;
    }

    /// <summary>Creates the exception with a message.</summary>
    public DeviceException() : base("an emulated device call failed") { }

    /// <summary>Creates the exception with a message.</summary>
    public DeviceException(string message) : base(message) { }

    /// <summary>Creates the exception with a message and a cause.</summary>
    public DeviceException(string message, Exception innerException) : base(message, innerException) { }

    /// <summary>The errno (positive).</summary>
    public int Errno { get; }
}
