import FileIO

extension PackError {
    /// A file-level failure (an open, read, mapping or write that failed; an output folder that is not new) as a
    /// k2pack error, with the same text.
    public init(_ error: FileIOError) {
        switch error {
        case let .io(path, operation, reason): self = .io(path: path, operation: operation, reason: reason)
        case let .outputExists(path, resumable): self = .outputExists(path: path, resumable: resumable)
        case .outsideFolder: self = .io(path: error.file, operation: "open", reason: error.description)
        }
    }
}
