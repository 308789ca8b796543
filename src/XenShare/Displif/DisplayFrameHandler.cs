namespace XenShare.Displif;

/// <summary>Receives a frame a sink shows (<see cref="GntDevImportSink.FrameShown"/>).</summary>
/// <param name="frame">The frame; its pixels are valid during the call only.</param>
public delegate void DisplayFrameHandler(in DisplayFrame frame);
