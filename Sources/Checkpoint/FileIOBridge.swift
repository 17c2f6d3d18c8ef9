import FileIO
import JSONCore

extension CheckpointError {
    /// A file-level failure (an open, read or mapping that failed; a link out of the folder) as a checkpoint
    /// error, with the same text.
    public init(_ error: FileIOError) {
        switch error {
        case let .io(path, operation, reason): self = .io(path: path, operation: operation, reason: reason)
        case let .outsideFolder(file, target): self = .outsideFolder(file: file, target: target)
        // Only writers meet an output folder that exists; should one reach a reader, its whole text is kept.
        case .outputExists: self = .io(path: error.file, operation: "write there", reason: error.description)
        }
    }
}

/// Runs file I/O inside a function that throws `CheckpointError`, turning its failures into checkpoint errors.
func fileIO<T>(_ body: () throws(FileIOError) -> T) throws(CheckpointError) -> T {
    do { return try body() } catch { throw CheckpointError(error) }
}

extension CheckpointDirectory {
    /// Throws, naming the shard, when an opened shard changed since it was opened (its length or modification
    /// time): what was read from it may mix old and new bytes. Writers call it before keeping their output.
    public func checkUnchanged() throws(CheckpointError) {
        for shard in shards { try fileIO { () throws(FileIOError) in try shard?.file.checkUnchanged() } }
    }
}

extension ReadOnlyFile {
    /// SHA-256 of the whole file, as lowercase hex.
    public func sha256Hex() throws -> String {
        try withMapping { SHA256Digest.hex(of: $0) }
    }
}

extension FolderLinks {
    /// In a Hugging Face cache snapshot, each large file links to a blob named by its SHA-256: those names, as a
    /// checksum list, for the given files (nil when the folder is not a snapshot or no file links that way).
    public static func blobDigests(folder: String, names: [String]) -> ChecksumList? {
        guard let root = resolved(folder), let blobs = snapshotBlobs(root) else { return nil }
        var digests: [ByteName: String] = [:]
        for name in names {
            guard let target = resolved(folder + "/" + name), isInside(target, root: blobs) else { continue }
            let blob = target[(blobs.count + 1)...]
            let lowerHex = blob.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
            if blob.count == 64, lowerHex { digests[ByteName(name)] = text(Array(blob)) }
        }
        return digests.isEmpty ? nil : ChecksumList(byteDigests: digests)
    }
}
