import Checkpoint
import FileIO
import Foundation
import TensorCore

/// One output file written front to back through two fixed buffers: producers fill one buffer in place
/// (`withSpace`) while the other goes out on a background queue as one large positional write, the SHA-256 of
/// everything written (the `--resume` record) computed there on the way, so conversion, hashing and writing
/// overlap. The file is an `AtomicFile`: a temporary name until `commit` (fsync, rename); dropped unfinished,
/// nothing is left under either name.
final class GGUFStreamWriter {
    let path: String
    /// What the background writes touch: reached only under its lock, by one write at a time (the queue is
    /// serial), and by this object only after waiting for the writes in flight.
    private struct Sink {
        let file: AtomicFile
        let digest = SHA256Digest()
        var failure: GGUFConvertError?
    }
    private let sink: Locked<Sink>
    private let queue = DispatchQueue(label: "k2pack.gguf-writer")
    private let inFlight = DispatchGroup()
    private let buffers: [UnsafeMutableRawBufferPointer]
    private var current = 0
    private var used = 0
    /// File offset of the current buffer's first byte.
    private var flushedBytes = 0
    private let progress: ((Int) -> Void)?

    /// The size of each buffer: one working block (16 MiB), so each write is large and sequential.
    static let bufferBytes = IOSizes.workBlock

    var capacity: Int { buffers[current].count }
    /// Bytes handed to the writer so far.
    var position: Int { flushedBytes + used }

    init(path: String, bufferBytes: Int = GGUFStreamWriter.bufferBytes, progress: ((Int) -> Void)? = nil) throws(GGUFConvertError) {
        self.path = path
        let file: AtomicFile
        do {
            file = try AtomicFile(path: path)
        } catch {
            throw .from(error, path: path)
        }
        sink = Locked(Sink(file: file))
        buffers = [.allocate(byteCount: bufferBytes, alignment: 64), .allocate(byteCount: bufferBytes, alignment: 64)]
        self.progress = progress
    }

    deinit {
        // A write in flight still reads a buffer.
        inFlight.wait()
        for buffer in buffers { buffer.deallocate() }
    }

    /// Hands `body` `count` bytes of buffer to fill completely (`count` ≤ `capacity`), flushing first if needed.
    func withSpace(_ count: Int, _ body: (UnsafeMutableRawBufferPointer) throws(GGUFConvertError) -> Void) throws(GGUFConvertError) {
        precondition(count <= capacity, "a piece larger than the writer's buffer")
        if used + count > capacity { try flush() }
        try body(UnsafeMutableRawBufferPointer(rebasing: buffers[current][used..<(used + count)]))
        used += count
        progress?(count)
    }

    /// Appends bytes of any length (copied through the buffers in pieces).
    func append(_ bytes: UnsafeRawBufferPointer) throws(GGUFConvertError) {
        var at = 0
        while at < bytes.count {
            if used == capacity { try flush() }
            let n = min(bytes.count - at, capacity - used)
            UnsafeMutableRawBufferPointer(rebasing: buffers[current][used..<(used + n)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[at..<(at + n)]))
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

    /// Sends the current buffer to the background write and switches to the other one (once its own write is
    /// done).
    private func flush() throws(GGUFConvertError) {
        guard used > 0 else { return }
        inFlight.wait()
        if let failure = sink.withLock({ $0.failure }) { throw failure }
        let piece = SendablePointer(buffers[current].baseAddress!.assumingMemoryBound(to: UInt8.self))
        let (count, offset, path, sink) = (used, flushedBytes, path, sink)
        queue.async(group: inFlight) {
            sink.withLock { s in
                guard s.failure == nil else { return }
                let bytes = UnsafeRawBufferPointer(start: piece.pointer, count: count)
                s.digest.update(bytes)
                do throws(FileIOError) {
                    try s.file.write(bytes, at: offset)
                } catch {
                    s.failure = .from(error, path: path)
                }
            }
        }
        flushedBytes += used
        used = 0
        current ^= 1
    }

    /// Writes what is left, fsyncs and renames the file into place; returns its length and SHA-256.
    func commit() throws(GGUFConvertError) -> (bytes: Int, sha256: String) {
        try flush()
        inFlight.wait()
        let path = self.path
        let done: Result<String, GGUFConvertError> = sink.withLock { s in
            if let failure = s.failure { return .failure(failure) }
            do throws(FileIOError) {
                try s.file.commit()
            } catch {
                return .failure(.from(error, path: path))
            }
            return .success(s.digest.finalizeHex())
        }
        return (flushedBytes, try done.get())
    }
}
