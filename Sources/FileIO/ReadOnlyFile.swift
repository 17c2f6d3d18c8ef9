import Foundation
import TensorCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file for reading: exact positional reads and a whole-file read-only mapping.
/// Closes (and unmaps) on deinit. Files of an input folder are opened with `init(folder:name:)` (checked to be
/// inside the folder); `init(path:)` is for a file the user names directly (a `--sha256` list, a `--scheme` file).
public final class ReadOnlyFile: Sendable {
    public let path: String
    public let byteCount: Int
    private let fd: Int32
    /// The open descriptor (for checks on what was opened).
    var descriptor: Int32 { fd }
    /// The mapping once made, and its slot in the SIGBUS handler's registry (FatalSignals).
    private let mapping = Locked<(buffer: UnsafeRawBufferPointer?, slot: Int32)>((nil, -1))
    /// Whether `adviseHugePages` has run.
    private let hugePagesAdvised = Locked(false)
    /// Modification time when opened: with `byteCount`, what `changeSinceOpened` compares.
    private let modified: timespec

    public init(path: String) throws(FileIOError) {
        self.path = path
        // O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileIOError.io(path: path, operation: "open", reason: OpenFileLimit.explain(errno)) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let reason = errnoText()
            close(fd)
            throw FileIOError.io(path: path, operation: "stat", reason: reason)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileIOError.io(path: path, operation: "read", reason: "not a regular file")
        }
        self.fd = fd
        self.byteCount = Int(st.st_size)
        self.modified = st.st_mtim
    }

    deinit {
        let (buffer, slot) = mapping.withLock { $0 }
        FatalSignals.unregisterMapping(slot)
        if let buffer, let base = buffer.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), buffer.count) }
        close(fd)
    }

    /// How the open file differs from when it was opened (its length or modification time), or nil when it
    /// does not: another program rewrote or truncated it while we read it.
    public func changeSinceOpened() -> String? {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return "it can no longer be examined (\(errnoText()))" }
        if Int(st.st_size) != byteCount { return "it was \(byteCount) bytes when opened, it is now \(st.st_size)" }
        if st.st_mtim.tv_sec != modified.tv_sec || st.st_mtim.tv_nsec != modified.tv_nsec {
            return "it was modified after it was opened"
        }
        return nil
    }

    /// Throws when the file changed since it was opened (see `changeSinceOpened`): what was read from it may
    /// mix old and new bytes.
    public func checkUnchanged() throws(FileIOError) {
        if let change = changeSinceOpened() {
            throw FileIOError.io(path: path, operation: "use it", reason: "the file changed while being read (\(change)); read it again once it is complete")
        }
    }

    /// Reads exactly `count` bytes at `offset` into `buffer`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(FileIOError) {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileIOError.io(path: path, operation: "read", reason: errnoText())
            }
            if n == 0 {
                throw FileIOError.io(path: path, operation: "read", reason: "unexpected end of file at byte \(offset + done)")
            }
            done += n
        }
    }

    public func read(count: Int, at offset: Int) throws(FileIOError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var failure: FileIOError?
        bytes.withUnsafeMutableBytes { raw in
            do throws(FileIOError) { try read(into: raw, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
        return bytes
    }

    /// Runs `body` on the whole file's mapping, keeping the file (and so the mapping) alive until it returns.
    public func withMapping<R>(_ body: (UnsafeRawBufferPointer) throws -> R) throws -> R {
        try withExtendedLifetime(self) { try body(try mapped()) }
    }

    /// The whole file mapped read-only (mapped once, shared by all callers). The mapping lives as long as this
    /// object: keep the object alive while the buffer is used (or use `withMapping`).
    public func mapped() throws(FileIOError) -> UnsafeRawBufferPointer {
        let made = mapping.withLock { mapping -> Result<UnsafeRawBufferPointer, FileIOError> in
            if let buffer = mapping.buffer { return .success(buffer) }
            guard byteCount > 0 else { return .success(UnsafeRawBufferPointer(start: nil, count: 0)) }
            let p = mmap(nil, byteCount, PROT_READ, MAP_SHARED, fd, 0)
            guard let p, p != MAP_FAILED else { return .failure(FileIOError.io(path: path, operation: "mmap", reason: errnoText())) }
            let buffer = UnsafeRawBufferPointer(start: p, count: byteCount)
            mapping = (buffer, FatalSignals.registerMapping(p, length: byteCount, fd: fd, path: path))
            FatalSignals.afterMapping?(path)
            return .success(buffer)
        }
        return try made.get()
    }

    /// Hints that `range` of the mapping will be read soon (the kernel reads it ahead). Not `MADV_SEQUENTIAL`:
    /// on this kernel it leaves pages mapped beyond the ranges later dropped with `adviseDone` (measured: 164 MB
    /// left resident after reading and dropping a 1.2 GB file 1 MiB at a time, 15 MB without it).
    public func adviseSequential(_ range: Range<Int>) {
        advise(range, MADV_WILLNEED)
    }

    /// Asks the kernel, once, to back the whole mapping with transparent huge pages (`MADV_HUGEPAGE`): pages read
    /// through it then come into the page cache as 2 MiB folios, which map and unmap a PMD at a time. For data
    /// read once and released as it goes, as the forward pass's weights are (measured on this kernel: faulting in
    /// and releasing a 112 MB tensor took 6.6 ms of CPU from 4 KiB folios, 1.5 ms from 2 MiB ones). Whole-mapping
    /// advice, so the mapping stays one VMA; nothing happens where the kernel or the file system cannot.
    public func adviseHugePages() {
        guard mapping.withLock({ $0.buffer != nil }) else { return }
        let advise = hugePagesAdvised.withLock { done in
            defer { done = true }
            return !done
        }
        if advise { self.advise(0..<byteCount, MADV_HUGEPAGE) }
    }

    /// Drops `range` of the mapping from this process's resident set (the page cache keeps it).
    public func adviseDone(_ range: Range<Int>) {
        advise(range, MADV_DONTNEED)
    }

    private func advise(_ range: Range<Int>, _ advice: Int32) {
        let base = mapping.withLock { $0.buffer?.baseAddress }
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), range.upperBound - start, advice)
    }
}

extension ReadOnlyFile {
    /// The whole file's bytes (for small files: config.json, the index).
    public func readAll() throws(FileIOError) -> [UInt8] {
        guard byteCount <= 256 << 20 else {
            throw .io(path: path, operation: "read", reason: "\(byteCount) bytes is too large to read whole (limit 256 MiB)")
        }
        // Not zero-filled first: every byte is read into it (or the read throws).
        var failure: FileIOError?
        let bytes = [UInt8](unsafeUninitializedCapacity: byteCount) { buffer, count in
            do throws(FileIOError) {
                try read(into: UnsafeMutableRawBufferPointer(buffer), at: 0)
                count = byteCount
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw failure }
        return bytes
    }
}

/// The text of the current `errno`.
public func errnoText() -> String {
    String(cString: strerror(errno))
}
