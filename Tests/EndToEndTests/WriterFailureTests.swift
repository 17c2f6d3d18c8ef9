import Foundation
import TestSupport
import Testing

/// A small tmpfs mounted for one test (needs root and permission to mount; otherwise the reason is returned).
final class SmallMount {
    let path: String
    private var mounted = false

    init(size: String, readOnly: Bool) {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("k2pack-mount-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        mounted = Self.system(["/bin/mount", "-t", "tmpfs", "-o", (readOnly ? "ro," : "") + "size=\(size)", "tmpfs", path]) == 0
    }

    /// nil when mounted; otherwise why not.
    var unavailable: String? {
        mounted ? nil : "cannot mount a tmpfs here (not root, or no permission to mount in this container): ENOSPC and read-only tests skipped"
    }

    deinit {
        if mounted { _ = Self.system(["/bin/umount", path]) }
        try? FileManager.default.removeItem(atPath: path)
    }

    static func system(_ arguments: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// Every file below the mount, relative.
    func files() -> [String] {
        (FileManager.default.enumerator(atPath: path)?.allObjects as? [String]) ?? []
    }
}

/// Every writer, on a full disk and on a read-only destination: a clear error, exit 1, no temporary file left.
@Suite("writers on a full or read-only destination", .serialized)
struct WriterFailureTests {
    /// (name, arguments before the output folder). `export` reads a k2pack folder made first on the normal disk.
    static func writers(_ scratch: String) throws -> [(String, [String])] {
        let packed = scratch + "/packed", set = scratch + "/set"
        if !FileManager.default.fileExists(atPath: packed) {
            let r = try run(["convert", "--quiet", TestPaths.fixture("k25-tiny"), packed])
            #expect(r.status == 0, "\(r.err)")
            let s = try run(["shard", "--quiet", "--gpus", "2", "--tp", "2", TestPaths.fixture("deepseek-v3-tiny"), set])
            #expect(s.status == 0, "\(s.err)")
        }
        return [
            ("convert", ["convert", "--quiet", TestPaths.fixture("k25-tiny")]),
            ("convert --compress", ["convert", "--compress", "--quiet", TestPaths.fixture("k25-tiny")]),
            ("export", ["export", "--quiet", packed]),
            ("quantize", ["quantize", "--quiet", TestPaths.fixture("quantize/k2-thinking-bf16")]),
            ("dequantize", ["dequantize", "--quiet", TestPaths.fixture("k2-thinking-tiny")]),
            ("shard", ["shard", "--quiet", "--gpus", "2", "--ep", "2", TestPaths.fixture("k25-tiny")]),
            ("shard --merge", ["shard", "--merge", "--quiet", set]),
        ]
    }

    @Test("disk full (ENOSPC): clear error, no temporary files")
    func diskFull() throws {
        let scratch = TemporaryDirectory()
        for (name, arguments) in try Self.writers(scratch.path) {
            let mount = SmallMount(size: "96k", readOnly: false)
            if let reason = mount.unavailable { print("SKIPPED: \(reason)"); return }
            let r = try run(arguments + [mount.path + "/out"])
            #expect(r.status == 1, "\(name): status \(r.status)\n\(r.err)")
            #expect(r.err.contains("No space left on device"), "\(name): \(r.err)")
            let leftovers = mount.files().filter { $0.hasSuffix(".partial") || $0.contains("/.") }
            #expect(leftovers.isEmpty, "\(name) left \(leftovers)")
            if name == "shard --merge" {
                #expect(!mount.files().contains { $0.hasSuffix(".safetensors") }, "merge left finished shards of an unfinished checkpoint")
            }
        }
    }

    @Test("read-only destination: clear error, nothing written")
    func readOnly() throws {
        let scratch = TemporaryDirectory()
        for (name, arguments) in try Self.writers(scratch.path) {
            let mount = SmallMount(size: "1m", readOnly: true)
            if let reason = mount.unavailable { print("SKIPPED: \(reason)"); return }
            let r = try run(arguments + [mount.path + "/out"])
            #expect(r.status == 1, "\(name): status \(r.status)\n\(r.err)")
            #expect(r.err.lowercased().contains("read-only") || r.err.lowercased().contains("read only"), "\(name): \(r.err)")
            #expect(mount.files().isEmpty, "\(name) wrote \(mount.files())")
        }
    }
}

@Suite("verify in a Hugging Face cache snapshot")
struct CacheSnapshotCommandTests {
    @Test("verify checks every shard against its blob's SHA-256 name, and names a corrupt one")
    func blobNames() throws {
        let dir = TemporaryDirectory()
        let (snap, blobs) = try makeCacheSnapshot(of: "k25-tiny", in: dir.path)
        let ok = try run(["verify", "--quiet", snap])
        #expect(ok.status == 0, "\(ok.out)")
        #expect(ok.out.contains("checked against the Hugging Face cache's blob names, 0 mismatched"), "\(ok.out)")
        let victim = "model-00004-of-000006.safetensors"
        let url = URL(fileURLWithPath: try #require(blobs[victim]))
        var data = try Data(contentsOf: url)
        data[data.count - 3] ^= 0x20
        try data.write(to: url)
        let bad = try run(["verify", "--quiet", snap])
        #expect(bad.status == 1 && bad.out.contains(victim) && bad.out.contains("SHA-256 mismatch"), "\(bad.out)")
    }
}
