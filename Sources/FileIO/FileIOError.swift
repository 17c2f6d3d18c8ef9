import TensorCore

/// A file that could not be opened, read or mapped, or that resolves outside the folder it was opened in. The
/// text is the one readers have always given (`CheckpointError.io` and `.outsideFolder` carry the same).
public enum FileIOError: Error, Equatable, Sendable, CustomStringConvertible {
    case io(path: String, operation: String, reason: String)
    /// A file of the folder resolves outside it through a symlink (and not into a cache snapshot's blobs/).
    case outsideFolder(file: String, target: String)

    public var description: String {
        switch self {
        case let .io(path, operation, reason):
            "\(displayed(path)): cannot \(operation): \(displayed(reason, limit: nil))"
        case let .outsideFolder(file, target):
            "\(displayed(file)) is a symlink to \(displayed(target)), outside the checkpoint folder (links are followed only into a Hugging Face cache snapshot's own blobs/; pass --allow-outside-symlinks to accept it)"
        }
    }

    /// The file the error is about.
    public var file: String {
        switch self {
        case let .io(path, _, _): path
        case let .outsideFolder(file, _): file
        }
    }
}
