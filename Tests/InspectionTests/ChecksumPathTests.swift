import Checkpoint
import FileIO
import Foundation
import Inspection
import TestSupport
import Testing

@Suite("SHA-256 list entries are keyed by their whole relative path")
struct ChecksumPathTests {
    let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64), c = String(repeating: "c", count: 64)

    @Test("README.md and docs/README.md are two entries, each matched by its exact path")
    func sameBaseName() throws {
        let list = try ChecksumList.parse("\(a)  README.md\n\(b)  docs/README.md\n\(c)  ./config.json\n", fileName: "l")
        #expect(list.digests.count == 3)
        #expect(list.digest(for: "README.md") == a)
        #expect(list.digest(for: "docs/README.md") == b)
        #expect(list.digest(for: "config.json") == c)  // a leading ./ is dropped
        #expect(list.digest(for: "docs/config.json") == nil)  // never the top-level config.json's digest
        #expect(list.digest(for: "other/README.md") == nil)
    }

    @Test("a common folder prefix still matches, but only where the path after it is unique in the list")
    func commonPrefix() throws {
        let list = try ChecksumList.parse("\(a) *model/x.safetensors\n\(b)  model/docs/README.md\n\(c)  model/README.md\n", fileName: "l")
        #expect(list.digest(for: "x.safetensors") == a)
        #expect(list.digest(for: "docs/README.md") == b)
        #expect(list.digest(for: "README.md") == c)  // the common prefix "model/": not model/docs/README.md
        #expect(list.commonPrefix == Array("model/".utf8))
        #expect(list.digest(for: "docs/config.json") == nil)
        // Lines with different folders: a name that one listed path alone ends with still matches it.
        let mixed = try ChecksumList.parse("\(a)  /data/x.safetensors\n\(b)  ./other/y.safetensors\n", fileName: "l")
        #expect(mixed.commonPrefix.isEmpty)
        #expect(mixed.digest(for: "x.safetensors") == a)
        #expect(mixed.digest(for: "y.safetensors") == b)
    }

    @Test("a name that several listed paths end with matches none of them")
    func ambiguous() throws {
        let list = try ChecksumList.parse("\(a)  one/config.json\n\(b)  two/config.json\n", fileName: "l")
        #expect(list.digest(for: "config.json") == nil)
        #expect(list.digest(for: "one/config.json") == a)
    }

    @Test("the same path listed twice with different digests is refused, with its line", arguments: [
        ("docs/README.md", "docs/README.md", "docs/README.md"),
        ("./docs/README.md", "docs/README.md", "docs/README.md"),
        ("x.safetensors", "././x.safetensors", "x.safetensors"),
    ])
    func samePathTwice(_ first: String, _ second: String, _ shown: String) {
        #expect(throws: CheckpointError.checksumListMalformed(file: "l", line: 3, reason: "'\(shown)' is listed twice with different digests (first on line 1)")) {
            _ = try ChecksumList.parse("\(a)  \(first)\n\(b)  README.md\n\(c)  \(second)\n", fileName: "l")
        }
    }

    @Test("a line naming a folder rather than a file is refused", arguments: ["docs/..", "./.", "docs/"])
    func namesNoFile(_ name: String) {
        #expect(throws: CheckpointError.checksumListMalformed(file: "l", line: 1, reason: "'\(name)' names no file")) {
            _ = try ChecksumList.parse("\(a)  \(name)\n", fileName: "l")
        }
    }

    /// `sha256sum`-style lines for the given files of `folder`, each prefixed with `prefix`.
    func lines(_ folder: String, _ names: [String], prefix: String = "", digest override: [String: String] = [:]) throws -> String {
        try names.map { name in
            let digest = try override[name] ?? ReadOnlyFile(folder: folder, name: name).sha256Hex()
            return "\(digest)  \(prefix)\(name)"
        }.joined(separator: "\n")
    }

    @Test("a checkpoint with README.md and docs/README.md verifies against its list; a changed docs/ file is named")
    func verifySubFolders() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "k25-tiny")
        try Data("top readme".utf8).write(to: URL(fileURLWithPath: folder + "/README.md"))
        try Data("docs readme".utf8).write(to: URL(fileURLWithPath: folder + "/docs/README.md"))
        try Data("{}".utf8).write(to: URL(fileURLWithPath: folder + "/docs/config.json"))
        let dirInfo = try CheckpointDirectory(path: folder)
        let names = dirInfo.shardNames + ["config.json", "README.md", "docs/README.md", "docs/config.json"]
        for prefix in ["", "./", "model/"] {
            let list = try ChecksumList.parse(try lines(folder, names, prefix: prefix), fileName: "l")
            let report = try Verifier.verify(path: folder, options: VerifyOptions(checksums: list))
            #expect(report.passed, "\(prefix): \(report.findings.map(\.message))")
            #expect(report.findings.isEmpty, "\(prefix): \(report.findings.map(\.message))")
            #expect(report.checksums?.checked == names.count)
        }
        // docs/config.json's line holds the top-level config.json's digest: docs/config.json is named, not passed.
        let wrong = try ReadOnlyFile(folder: folder, name: "config.json").sha256Hex()
        let list = try ChecksumList.parse(try lines(folder, names, digest: ["docs/config.json": wrong]), fileName: "l")
        let report = try Verifier.verify(path: folder, options: VerifyOptions(checksums: list))
        #expect(!report.passed)
        let actual = try ReadOnlyFile(folder: folder, name: "docs/config.json").sha256Hex()
        #expect(report.findings.map(\.message) == [CheckpointError.checksumMismatch(file: "docs/config.json", expected: wrong, actual: actual).description])
    }

    @Test("a listed file in a sub-folder that the checkpoint lacks is a warning naming its listed path")
    func absentInSubFolder() throws {
        let folder = TestPaths.fixture("k25-tiny")
        let dirInfo = try CheckpointDirectory(path: folder)
        let text = try lines(folder, dirInfo.shardNames) + "\n\(a)  docs/missing.md\n"
        let report = try Verifier.verify(path: folder, options: VerifyOptions(checksums: try ChecksumList.parse(text, fileName: "l")))
        #expect(report.passed)
        #expect(report.findings.map(\.message) == ["docs/missing.md: listed in the SHA-256 list but not in the checkpoint folder"])
    }
}
