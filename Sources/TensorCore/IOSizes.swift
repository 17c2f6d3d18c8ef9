/// The block sizes of streamed work, named once.
public enum IOSizes {
    /// A copied or checked piece of a mapped input (64 MiB): written, then dropped from the process, so memory
    /// stays bounded whatever the tensor's size (docs/RELIABILITY.md, "convert and export keep memory bounded").
    public static let copyPiece = 64 << 20
    /// One working block (16 MiB): rows converted at once, bytes hashed per step, bytes gathered before a write.
    public static let workBlock = 16 << 20
}
