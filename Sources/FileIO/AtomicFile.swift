import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TensorCore

/// A file written under a temporary name in its destination folder and renamed into place only when complete
/// and flushed: a crash never leaves a partial file under the final name. Every writer writes every file
/// through this type.
///
/// Links are never followed: the folder is opened once and everything happens relative to it; the temporary
/// name is created exclusively (`O_CREAT | O_EXCL | O_NOFOLLOW`; a stale temporary regular file of ours is
/// removed first, anything else at that name is refused); the final name must be absent or a regular file (a
/// link, folder, device or FIFO there is refused, not replaced). While the file is unfinished its temporary name
/// is registered with `FatalSignals`, so even a SIGBUS (an input shrinking under its mapping) removes it.
public final class AtomicFile {
    public let path: String
    public let temporaryPath: String
    private let name: String
    private let temporaryName: String
    private let folder: Int32
    private var fd: Int32
    private let slot: Int32
    private var committed = false

    public init(path: String) throws(FileIOError) {
        self.path = path
        name = OutputPaths.name(of: path)
        temporaryName = "." + name + ".partial"
        let folderPath = OutputPaths.folder(of: path)
        temporaryPath = folderPath == "." && !path.hasPrefix("./") ? temporaryName : (folderPath == "/" ? "/" : folderPath + "/") + temporaryName
        let folder = open(folderPath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard folder >= 0 else {
            throw .io(path: path, operation: "open its folder", reason: String(cString: strerror(errno)))
        }
        let created: (fd: Int32, slot: Int32)
        do throws(FileIOError) {
            try Self.checkFinalName(folder: folder, name: name, path: path)
            created = try Self.createTemporary(folder: folder, name: temporaryName, path: temporaryPath)
        } catch {
            close(folder)
            throw error
        }
        self.folder = folder
        fd = created.fd
        slot = created.slot
    }

    deinit {
        if fd >= 0 { close(fd) }
        if !committed { unlinkat(folder, temporaryName, 0) }
        FatalSignals.unregisterTemporary(slot)
        close(folder)
    }

    /// The final name may be absent or a regular file (replaced by the rename); nothing else.
    static func checkFinalName(folder: Int32, name: String, path: String) throws(FileIOError) {
        var st = stat()
        if fstatat(folder, name, &st, AT_SYMLINK_NOFOLLOW) == 0 {
            if let problem = OutputPaths.notRegular(st, path: path) { throw .io(path: path, operation: "write it", reason: problem) }
        } else if errno != ENOENT {
            throw .io(path: path, operation: "write it", reason: String(cString: strerror(errno)))
        }
    }

    /// Creates the temporary file exclusively. A regular file of ours already there is what an interrupted run
    /// left: it is removed and created afresh. A link or anything else there is refused (never followed).
    static func createTemporary(folder: Int32, name: String, path: String) throws(FileIOError) -> (fd: Int32, slot: Int32) {
        let flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC
        for attempt in 0..<2 {
            let created = FatalSignals.createTemporary(folder: folder, name: name, flags: flags, mode: 0o644, path: path)
            if created.fd >= 0 { return created }
            guard errno == EEXIST, attempt == 0 else { break }
            var st = stat()
            guard fstatat(folder, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else { continue }
            if (st.st_mode & S_IFMT) != S_IFREG {
                let what = OutputPaths.notRegular(st, path: path) ?? "it is not a regular file"
                throw .io(path: path, operation: "create the temporary file", reason: "something is already at this name: \(what); remove it")
            }
            guard st.st_uid == geteuid() else {
                throw .io(path: path, operation: "create the temporary file", reason: "a file of another user is already at this name; remove it")
            }
            guard unlinkat(folder, name, 0) == 0 || errno == ENOENT else { break }
        }
        throw .io(path: path, operation: "create the temporary file", reason: String(cString: strerror(errno)))
    }

    /// Sets the final length up front (the unwritten parts read as zeros).
    public func setLength(_ length: Int) throws(FileIOError) {
        guard ftruncate(fd, off_t(length)) == 0 else { throw failure("resize") }
    }

    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(FileIOError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                if errno == EFAULT {
                    // The kernel could not read the bytes handed to it: they were mapped from an input file that
                    // has since shrunk.
                    throw .io(path: path, operation: "write", reason: "the bytes to copy could not be read: an input file changed (shrank) while being read")
                }
                throw failure("write")
            }
            done += n
        }
    }

    public func write(_ bytes: [UInt8], at offset: Int) throws(FileIOError) {
        var failure: FileIOError?
        bytes.withUnsafeBytes { raw in
            do throws(FileIOError) { try write(raw, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Flushes, renames into place (the final name checked again: still absent or a regular file) and flushes
    /// the folder.
    public func commit() throws(FileIOError) {
        guard fsync(fd) == 0 else { throw failure("fsync") }
        close(fd)
        fd = -1
        try Self.checkFinalName(folder: folder, name: name, path: path)
        guard renameat(folder, temporaryName, folder, name) == 0 else { throw failure("rename into place") }
        committed = true
        fsync(folder)
    }

    private func failure(_ operation: String) -> FileIOError {
        .io(path: path, operation: operation, reason: String(cString: strerror(errno)))
    }

    /// Writes a small file atomically.
    public static func write(_ bytes: [UInt8], to path: String) throws(FileIOError) {
        let file = try AtomicFile(path: path)
        try file.write(bytes, at: 0)
        try file.commit()
    }
}
