import FileIO
import TensorCore

/// One safetensors file: its validated header and a handle for reading its data.
public final class SafetensorsFile: Sendable {
    public let header: SafetensorsHeader
    public let file: ReadOnlyFile
    /// The name used in messages (the file name within its checkpoint).
    public var name: String { header.fileName }
    public var tensors: [TensorEntry] { header.tensors }

    /// Opens `path`, reading only the header; `name` is how messages refer to the file.
    public convenience init(path: String, name: String) throws(CheckpointError) {
        try self.init(file: try fileIO { () throws(FileIOError) in try ReadOnlyFile(path: path) }, name: name)
    }

    /// Opens the file `name` of the input folder `folder` (refused when it resolves outside it), reading only
    /// the header.
    public convenience init(folder: String, name: String) throws(CheckpointError) {
        try self.init(file: try fileIO { () throws(FileIOError) in try ReadOnlyFile(folder: folder, name: name) }, name: name)
    }

    init(file: ReadOnlyFile, name: String) throws(CheckpointError) {
        let prefixCount = min(8, file.byteCount)
        let prefix = try fileIO { () throws(FileIOError) in try file.read(count: prefixCount, at: 0) }
        let headerLength = try prefix.withBytes { (raw) throws(CheckpointError) -> Int in
            try SafetensorsHeader.headerLength(prefix: raw, fileName: name, fileLength: file.byteCount)
        }
        // Read straight into uninitialized storage: the header is ~0.5 MB per shard of a large checkpoint, and
        // zero-filling it first doubles the memory traffic.
        var failure: FileIOError?
        let json = [UInt8](unsafeUninitializedCapacity: headerLength) { buffer, count in
            do throws(FileIOError) {
                try file.read(into: UnsafeMutableRawBufferPointer(buffer), at: 8)
                count = headerLength
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw CheckpointError(failure) }
        self.header = try json.withBytes { (raw) throws(CheckpointError) -> SafetensorsHeader in
            try SafetensorsHeader.parse(json: raw, fileName: name, fileLength: file.byteCount)
        }
        self.file = file
    }

    /// A tensor's bytes, from the file's read-only mapping.
    public func bytes(of entry: TensorEntry) throws(CheckpointError) -> UnsafeRawBufferPointer {
        let whole = try fileIO { () throws(FileIOError) in try file.mapped() }
        return UnsafeRawBufferPointer(rebasing: whole[entry.rangeInFile])
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` for a body with typed throws.
    func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws(CheckpointError) -> R) throws(CheckpointError) -> R {
        let result: Result<R, CheckpointError> = self.withUnsafeBytes { raw in
            Result { () throws(CheckpointError) -> R in try body(raw) }
        }
        return try result.get()
    }
}
