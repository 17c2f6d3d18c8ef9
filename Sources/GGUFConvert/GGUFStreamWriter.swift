import Checkpoint
import FileIO
import Foundation
import TensorCore

/// One output file written front to back through a fixed buffer: producers fill the buffer in place
/// (`withSpace`), full buffers go out as single large positional writes, and the SHA-256 of everything written
/// is kept on the way (the `--resume` record). The file is an `AtomicFile`: a temporary name until `commit`
/// (fsync, rename); dropped unfinished, nothing is left under either name.
final class GGUFStreamWriter {
    let path: String
    private let file: AtomicFile
    private let buffer: UnsafeMutableRawBufferPointer
    private var used = 0
    /// File offset of `buffer[0]`.
    private var flushedBytes = 0
    private let digest = SHA256Digest()
    private let progress: ((Int) -> Void)?

    /// The buffer size: one working block (16 MiB), so each write is large and sequential.
    static let bufferBytes = IOSizes.workBlock

    var capacity: Int { buffer.count }
    /// Bytes handed to the writer so far.
    var position: Int { flushedBytes + used }

    init(path: String, bufferBytes: Int = GGUFStreamWriter.bufferBytes, progress: ((Int) -> Void)? = nil) throws(GGUFConvertError) {
        self.path = path
        do {
            file = try AtomicFile(path: path)
        } catch {
            throw .from(error, path: path)
        }
        buffer = .allocate(byteCount: bufferBytes, alignment: 64)
        self.progress = progress
    }

    deinit { buffer.deallocate() }

    /// Hands `body` `count` bytes of buffer to fill completely (`count` ≤ `capacity`), flushing first if needed.
    func withSpace(_ count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(GGUFConvertError) -> Void) throws(GGUFConvertError) {
        precondition(count <= buffer.count, "a piece larger than the writer's buffer")
        if used + count > buffer.count { try flush() }
        try body(UnsafeMutableRawBufferPointer(rebasing: buffer[used..<(used + count)]))
        used += count
        progress?(count)
    }

    /// Appends bytes of any length (copied through the buffer in pieces).
    func append(_ bytes: UnsafeRawBufferPointer) throws(GGUFConvertError) {
        var at = 0
        while at < bytes.count {
            if used == buffer.count { try flush() }
            let n = min(bytes.count - at, buffer.count - used)
            UnsafeMutableRawBufferPointer(rebasing: buffer[used..<(used + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]))
            used += n
            at += n
            progress?(n)
        }
    }

    func append(_ bytes: [UInt8]) throws(GGUFConvertError) {
        var failure: GGUFConvertError?
        bytes.withUnsafeBytes { raw in
            do throws(GGUFConvertError) { try append(raw) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Zero bytes up to the next multiple of `alignment` of the file position.
    func pad(to alignment: Int) throws(GGUFConvertError) {
        let n = (alignment - position % alignment) % alignment
        guard n > 0 else { return }
        try withSpace(n) { $0.initializeMemory(as: UInt8.self, repeating: 0) }
    }

    private func flush() throws(GGUFConvertError) {
        guard used > 0 else { return }
        let piece = UnsafeRawBufferPointer(rebasing: buffer[0..<used])
        digest.update(piece)
        do {
            try file.write(piece, at: flushedBytes)
        } catch {
            throw .from(error, path: path)
        }
        flushedBytes += used
        used = 0
    }

    /// Flushes, fsyncs and renames the file into place; returns its length and SHA-256.
    func commit() throws(GGUFConvertError) -> (bytes: Int, sha256: String) {
        try flush()
        do {
            try file.commit()
        } catch {
            throw .from(error, path: path)
        }
        return (flushedBytes, digest.finalizeHex())
    }
}
