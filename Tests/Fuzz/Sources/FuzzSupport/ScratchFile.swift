import Foundation

/// The fuzz input written to a file in /dev/shm (readers that take paths read it back), one per process; and
/// per-process scratch folders. All are removed when the process exits normally (a crash leaves them for study).
public enum ScratchFile {
    static let root = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()

    public static let path: String = {
        let file = root + "/k2pack-fuzz-\(getpid())"
        removeAtExit(file)
        return file
    }()

    /// Another scratch file of this process: `path` + `suffix` (not created).
    public static func file(_ suffix: String) -> String {
        removeAtExit(path + suffix)
        return path + suffix
    }

    /// A new, empty folder path for this process (`k2pack-fuzz-NAME-PID`; not created).
    public static func folder(_ name: String) -> String {
        let dir = root + "/k2pack-fuzz-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        removeAtExit(dir)
        return dir
    }

    private static func removeAtExit(_ path: String) {
        leftovers.withLock { list in
            if list.isEmpty { atexit { ScratchFile.removeLeftovers() } }
            list.append(path)
        }
    }

    private static func removeLeftovers() {
        for path in leftovers.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: path) }
    }

    private static let leftovers = Locked<[String]>([])

    public static func write(_ data: UnsafePointer<UInt8>, _ size: Int) -> String {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        precondition(fd >= 0, "cannot create \(path)")
        var done = 0
        while done < size {
            let n = Foundation.write(fd, data + done, size - done)
            precondition(n > 0, "cannot write \(path)")
            done += n
        }
        close(fd)
        return path
    }
}

/// A value behind a lock (Swift 6: shared mutable state must be guarded).
final class Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

@_silgen_name("LLVMFuzzerRunDriver")
private func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

/// Hands the process to libFuzzer with `body` as the target (SwiftPM gives every executable its own `main`,
/// so libFuzzer's is not used; its driver is called instead).
public func runFuzzer(_ body: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Never {
    var argc = CommandLine.argc
    var argv = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, body))
}
