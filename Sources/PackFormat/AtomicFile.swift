import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file written under a temporary name in its destination folder and renamed into place only when complete
/// and flushed: a crash never leaves a partial file under the final name.
public final class AtomicFile {
    public let path: String
    public let temporaryPath: String
    private var fd: Int32
    private var committed = false

    public init(path: String) throws(PackError) {
        self.path = path
        let url = URL(fileURLWithPath: path)
        temporaryPath = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial").path
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io(path: temporaryPath, operation: "create", reason: String(cString: strerror(errno))) }
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlink(temporaryPath) }
    }

    /// Sets the final length up front (the unwritten parts read as zeros).
    public func setLength(_ length: Int) throws(PackError) {
        guard ftruncate(fd, off_t(length)) == 0 else { throw failure("resize") }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(PackError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw failure("write")
            }
            done += n
        }
    }

    public func write(_ bytes: [UInt8], at offset: Int) throws(PackError) {
        var failure: PackError?
        bytes.withUnsafeBytes { raw in
            do throws(PackError) { try write(raw, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Flushes, renames into place and flushes the folder.
    public func commit() throws(PackError) {
        guard fsync(fd) == 0 else { throw failure("fsync") }
        close(fd)
        fd = -1
        guard rename(temporaryPath, path) == 0 else { throw failure("rename into place") }
        committed = true
        let folder = open(URL(fileURLWithPath: path).deletingLastPathComponent().path, O_RDONLY | O_DIRECTORY)
        if folder >= 0 {
            fsync(folder)
            close(folder)
        }
    }

    private func failure(_ operation: String) -> PackError {
        .io(path: path, operation: operation, reason: String(cString: strerror(errno)))
    }

    /// Writes a small file atomically.
    public static func write(_ bytes: [UInt8], to path: String) throws(PackError) {
        let file = try AtomicFile(path: path)
        try file.write(bytes, at: 0)
        try file.commit()
    }
}
