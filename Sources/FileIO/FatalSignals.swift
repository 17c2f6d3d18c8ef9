import CSignals
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What the process must do if an input file shrinks under its mapping (a re-download or a sync rewriting a
/// shard while we read it): the kernel then raises SIGBUS at the first access past the new end. The handler
/// (C, `Sources/CSignals`, async-signal-safe calls only) names the file whose mapping faulted, removes every
/// temporary file being written, and exits with `inputChangedExitCode`. `ReadOnlyFile` registers its mappings
/// and `AtomicFile` its temporary files; the executable installs the handler at start-up.
public enum FatalSignals {
    /// The exit status after an input file changed while being read (EX_IOERR of sysexits.h).
    public static let inputChangedExitCode: Int32 = 74

    /// Installs the SIGBUS handler (once, at start-up).
    public static func install() {
        _ = k2_install_sigbus_handler(inputChangedExitCode)
    }

    /// Creates a temporary file (`openat(folder, name, flags, mode)`) and records it as `path`, to be removed if
    /// the process dies of SIGBUS, in one step the handler waits for (nothing is created after its sweep).
    /// Returns the descriptor (negative, errno set, on failure) and the slot for `unregisterTemporary`
    /// (negative when none is free: the file is then simply not removed by the handler).
    public static func createTemporary(folder: Int32, name: String, flags: Int32, mode: mode_t, path: String) -> (fd: Int32, slot: Int32) {
        var slot: Int32 = -1
        let fd = k2_temp_create(folder, name, flags, Int32(mode), path, &slot)
        return (fd, slot)
    }

    public static func unregisterTemporary(_ slot: Int32) { k2_temp_unregister(slot) }

    static func registerMapping(_ base: UnsafeRawPointer, length: Int, fd: Int32, path: String) -> Int32 {
        k2_map_register(base, length, fd, path)
    }

    static func unregisterMapping(_ slot: Int32) { k2_map_unregister(slot) }

    /// Called with a file's path right after it is mapped (nil: nothing). The executable sets it only for the
    /// test hook `K2PACK_TEST_WHEN_MAPPED`, to change a file at a chosen point of a real run.
    nonisolated(unsafe) public static var afterMapping: ((String) -> Void)?

    /// Temporary files and mappings registered now (for tests).
    public static var temporaryCount: Int { Int(k2_temp_count()) }
    public static var mappingCount: Int { Int(k2_map_count()) }
}

/// The per-process limit on open files. Every shard of a checkpoint is held open (and mapped) at once, so a
/// checkpoint of ~1,000 shards exceeds the usual soft limit of 1,024; the hard limit is usually far higher.
public enum OpenFileLimit {
    /// Raises the soft limit to the hard limit (start-up; failures are ignored: the old limit stays).
    public static func raiseToHardLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// The soft limit now, or nil when it cannot be read or is unlimited.
    public static var current: Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max, limit.rlim_cur <= UInt64(Int.max) else { return nil }
        return Int(limit.rlim_cur)
    }

    /// The reason to give when `open` failed with `error` (EMFILE / ENFILE explained: it is the number of files
    /// held open, not the file being opened, that is the problem).
    public static func explain(_ error: Int32) -> String {
        switch error {
        case EMFILE:
            let limit = current.map { " (\($0))" } ?? ""
            return "too many open files: this process reached its limit of open files\(limit); k2pack holds every shard of a checkpoint open at once, so a checkpoint of many shards needs a higher limit (`ulimit -n`); nothing is wrong with this file"
        case ENFILE:
            return "too many open files in the whole system; nothing is wrong with this file"
        default:
            return String(cString: strerror(error))
        }
    }
}
