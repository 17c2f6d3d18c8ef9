import Checkpoint
import FileIO
import Foundation
import TestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite("files that change while they are read")
struct ReadOnlyFileChangeTests {
    func opened(_ dir: TemporaryDirectory) throws -> (ReadOnlyFile, String) {
        let path = dir.write("shard.safetensors", [UInt8](repeating: 7, count: 8192))
        let file = try ReadOnlyFile(path: path)
        _ = try file.mapped()
        return (file, path)
    }

    func expectChanged(_ file: ReadOnlyFile, _ change: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(file.changeSinceOpened() == change, sourceLocation: sourceLocation)
        #expect(throws: FileIOError.io(path: file.path, operation: "use it", reason: "the file changed while being read (\(change)); read it again once it is complete"),
                sourceLocation: sourceLocation) { try file.checkUnchanged() }
    }

    @Test("unchanged, truncated, extended and rewritten in place are told apart")
    func changes() throws {
        let dir = TemporaryDirectory()
        let (same, _) = try opened(dir)
        #expect(same.changeSinceOpened() == nil)
        try same.checkUnchanged()

        let (shrunk, path) = try opened(dir)
        #expect(truncate(path, 4096) == 0)
        expectChanged(shrunk, "it was 8192 bytes when opened, it is now 4096")

        let (grown, path2) = try opened(dir)
        #expect(truncate(path2, 9000) == 0)
        expectChanged(grown, "it was 8192 bytes when opened, it is now 9000")

        let (rewritten, path3) = try opened(dir)
        // Same length, new bytes: only the modification time tells.
        var times = [timespec(tv_sec: 1_000_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, path3, &times, 0) == 0)
        expectChanged(rewritten, "it was modified after it was opened")

        // Replaced by a new file under the same name (a download renamed into place): the open file is the old
        // one, still whole, so what was read stays consistent.
        let (replaced, path4) = try opened(dir)
        #expect(unlink(path4) == 0)
        dir.write("shard.safetensors", [1, 2, 3])
        #expect(replaced.changeSinceOpened() == nil)
    }

    @Test("a checkpoint folder names the shard that changed")
    func directory() throws {
        let dir = TemporaryDirectory()
        let copy = dir.copy(fixture: "k25-tiny")
        let checkpoint = try CheckpointDirectory(path: copy)
        try checkpoint.checkUnchanged()
        let name = checkpoint.shardNames[2]
        let length = try #require(checkpoint.shards[2]?.file.byteCount)
        #expect(truncate(copy + "/" + name, off_t(length - 8)) == 0)
        #expect(throws: CheckpointError.io(
            path: copy + "/" + name, operation: "use it",
            reason: "the file changed while being read (it was \(length) bytes when opened, it is now \(length - 8)); read it again once it is complete")
        ) { try checkpoint.checkUnchanged() }
    }

    @Test("too many open files is explained as the process's limit, not as a fault of the file")
    func tooManyOpenFiles() {
        let text = OpenFileLimit.explain(EMFILE)
        #expect(text.hasPrefix("too many open files: this process reached its limit of open files"))
        #expect(text.contains("k2pack holds every shard of a checkpoint open at once") && text.contains("`ulimit -n`") && text.hasSuffix("nothing is wrong with this file"))
        #expect(OpenFileLimit.explain(ENFILE) == "too many open files in the whole system; nothing is wrong with this file")
        #expect(OpenFileLimit.explain(ENOENT) == String(cString: strerror(ENOENT)))
        if let current = OpenFileLimit.current { #expect(text.contains("(\(current))")) }
    }
}
