import TensorCore

/// A file that could not be opened, read, mapped or written, one that resolves outside the folder it was opened
/// in, or an output folder that is not new. The text is the one readers and writers have always given
/// (`CheckpointError.io`/`.outsideFolder` and `PackError.io`/`.outputExists` carry the same).
public enum FileIOError: Error, Equatable, Sendable, CustomStringConvertible {
    case io(path: String, operation: String, reason: String)
    /// A file of the folder resolves outside it through a symlink (and not into a cache snapshot's blobs/).
    case outsideFolder(file: String, target: String)
    /// An output folder that must be new or empty is neither. `resumable`: the writer can pick up where an
    /// interrupted run stopped.
    case outputExists(path: String, resumable: Bool = false)

    public var description: String {
        switch self {
        case let .io(path, operation, reason):
            "\(displayed(path)): cannot \(operation): \(displayed(reason, limit: nil))"
        case let .outsideFolder(file, target):
            "\(displayed(file)) is a symlink to \(displayed(target)), outside the checkpoint folder (links are followed only into a Hugging Face cache snapshot's own blobs/; pass --allow-outside-symlinks to accept it)"
        case let .outputExists(path, resumable):
            "\(displayed(path)): already exists and is not empty; choose a new folder" + (resumable ? " (or --resume an interrupted convert)" : "")
        }
    }

    /// The file the error is about.
    public var file: String {
        switch self {
        case let .io(path, _, _): path
        case let .outsideFolder(file, _): file
        case let .outputExists(path, _): path
        }
    }
}
