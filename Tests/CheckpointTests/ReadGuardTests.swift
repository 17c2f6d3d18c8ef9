import Checkpoint
import FileIO
import Foundation
import JSONCore
import TestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Makes a folder or a symlink with exactly these bytes as its name (no Unicode normalization on the way).
func makeFolder(_ path: [UInt8]) {
    #expect((path + [0]).withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { mkdir($0.baseAddress!, 0o755) } } == 0)
}

func makeLink(at path: [UInt8], to target: [UInt8]) {
    let made = (target + [0]).withUnsafeBufferPointer { t in
        (path + [0]).withUnsafeBufferPointer { p in
            t.withMemoryRebound(to: CChar.self) { tc in p.withMemoryRebound(to: CChar.self) { symlink(tc.baseAddress!, $0.baseAddress!) } }
        }
    }
    #expect(made == 0)
}

/// The outside-the-folder guard on every file a checkpoint reader opens, with paths compared as bytes (issue 15,
/// item 2). In the FolderLinksTests suite: it is serialized, and one of its tests turns the guard off for a while.
extension FolderLinksTests {
    func outsideProblem(_ folder: String, _ file: String) throws -> CheckpointError {
        let directory = try CheckpointDirectory(path: folder)
        return try #require(directory.problems.first { if case .outsideFolder(let f, _) = $0 { f == file } else { false } },
                            "\(directory.problems)")
    }

    @Test("an index entry without the .safetensors suffix is checked like any shard (a link outside, /etc/passwd)")
    func indexEntryWithoutSuffix() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "k2-thinking-tiny")
        let shard = "model-00002-of-000003.safetensors"
        try FileManager.default.createDirectory(atPath: dir.path + "/outside", withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: folder + "/" + shard, toPath: dir.path + "/outside/secret.safetensors")
        try FileManager.default.createSymbolicLink(atPath: folder + "/x.bin", withDestinationPath: "../outside/secret.safetensors")
        let indexPath = folder + "/model.safetensors.index.json"
        let text = try String(contentsOfFile: indexPath, encoding: .utf8)
        try text.replacingOccurrences(of: shard, with: "x.bin").write(toFile: indexPath, atomically: true, encoding: .utf8)
        let problem = try outsideProblem(folder, "x.bin")
        #expect(problem.description.hasPrefix("x.bin is a symlink to \(dir.url.resolvingSymlinksInPath().path)/outside/secret.safetensors, outside the checkpoint folder"))
        // A link to a system file: refused before it is parsed (no header error about it).
        try FileManager.default.removeItem(atPath: folder + "/x.bin")
        try FileManager.default.createSymbolicLink(atPath: folder + "/x.bin", withDestinationPath: "/etc/passwd")
        let directory = try CheckpointDirectory(path: folder)
        #expect(directory.problems.contains(.outsideFolder(file: "x.bin", target: "/etc/passwd")), "\(directory.problems)")
        #expect(!directory.problems.contains { if case .headerTooLarge = $0 { true } else if case .headerPastEnd = $0 { true } else { false } })
        // config.json and the index are guarded the same way.
        let other = dir.copy(fixture: "deepseek-v3-tiny")
        try FileManager.default.moveItem(atPath: other + "/config.json", toPath: dir.path + "/outside/config.json")
        try FileManager.default.createSymbolicLink(atPath: other + "/config.json", withDestinationPath: dir.path + "/outside/config.json")
        let refused = try CheckpointDirectory(path: other)
        #expect(refused.configBytes == nil)
        #expect(refused.problems.contains { if case .outsideFolder("config.json", _) = $0 { true } else { false } })
    }

    @Test("a sibling folder whose name equals the checkpoint's under NFC/NFD is outside")
    func canonicalEquivalence() throws {
        let dir = TemporaryDirectory()
        let root = Array(dir.url.resolvingSymlinksInPath().path.utf8)
        let nfc = root + Array("/caf\u{E9}".utf8), nfd = root + Array("/cafe\u{301}".utf8)
        #expect("caf\u{E9}" == "cafe\u{301}")  // why String comparison was wrong
        makeFolder(nfc)
        makeFolder(nfd)
        let folder = String(decoding: nfc, as: UTF8.self)
        for name in try FileManager.default.contentsOfDirectory(atPath: TestPaths.fixture("deepseek-v3-tiny")) {
            try FileManager.default.copyItem(atPath: TestPaths.fixture("deepseek-v3-tiny") + "/" + name, toPath: folder + "/" + name)
        }
        try FileManager.default.moveItem(atPath: folder + "/model.safetensors", toPath: String(decoding: nfd, as: UTF8.self) + "/secret.safetensors")
        makeLink(at: nfc + Array("/model.safetensors".utf8), to: nfd + Array("/secret.safetensors".utf8))
        _ = try outsideProblem(folder, "model.safetensors")
        // The same link into the folder itself is fine.
        try FileManager.default.moveItem(atPath: String(decoding: nfd, as: UTF8.self) + "/secret.safetensors", toPath: folder + "/real.bin")
        try FileManager.default.removeItem(atPath: folder + "/model.safetensors")
        makeLink(at: nfc + Array("/model.safetensors".utf8), to: nfc + Array("/real.bin".utf8))
        #expect(try CheckpointDirectory(path: folder).problems.isEmpty)
    }

    @Test("a sibling folder whose invalid UTF-8 name repairs to the same String is outside")
    func invalidUTF8() throws {
        let dir = TemporaryDirectory()
        let root = Array(dir.url.resolvingSymlinksInPath().path.utf8)
        let mine = root + Array("/ck".utf8) + [0xFF], sibling = root + Array("/ck".utf8) + [0xFE]
        #expect(String(decoding: mine, as: UTF8.self) == String(decoding: sibling, as: UTF8.self))
        makeFolder(mine)
        makeFolder(sibling)
        // The checkpoint is reached through a link with a valid name.
        makeLink(at: root + Array("/link".utf8), to: mine)
        let folder = dir.path + "/link"
        for name in try FileManager.default.contentsOfDirectory(atPath: TestPaths.fixture("deepseek-v3-tiny")) where name != "model.safetensors" {
            try FileManager.default.copyItem(atPath: TestPaths.fixture("deepseek-v3-tiny") + "/" + name, toPath: folder + "/" + name)
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: TestPaths.fixture("deepseek-v3-tiny") + "/model.safetensors"))
        #expect(FileManager.default.createFile(atPath: String(decoding: root, as: UTF8.self) + "/plain", contents: data))
        // Move the data in by bytes: the sibling's name cannot be spelled as a String.
        let moved = (root + Array("/plain".utf8) + [0]).withUnsafeBufferPointer { a in
            (sibling + Array("/secret.safetensors".utf8) + [0]).withUnsafeBufferPointer { b in
                a.withMemoryRebound(to: CChar.self) { ac in b.withMemoryRebound(to: CChar.self) { rename(ac.baseAddress!, $0.baseAddress!) } }
            }
        }
        #expect(moved == 0)
        makeLink(at: mine + Array("/model.safetensors".utf8), to: sibling + Array("/secret.safetensors".utf8))
        _ = try outsideProblem(folder, "model.safetensors")
    }

    @Test("names equal under NFC/NFD are two names: tensors, index entries and shard files")
    func namesAsBytes() throws {
        let nfc = "model.caf\u{E9}.weight", nfd = "model.cafe\u{301}.weight"
        // A header with both is two tensors, not a duplicate key.
        let header = SafetensorsBuilder([.init(nfc, "F32", [1], [0, 0, 0, 0]), .init(nfd, "F32", [1], [0, 0, 128, 63])]).bytes()
        let parsed = try Array(header.dropLast(8)).withUnsafeBytes { try SafetensorsHeader.parse(detached: $0, fileName: "h") }
        #expect(parsed.tensors.map(\.name) == [nfc, nfd])
        // An index with both is two entries; JSON objects keep both keys.
        let index = try ShardIndex.parse(Array(#"{"weight_map": {"\#(nfc)": "a.safetensors", "\#(nfd)": "a.safetensors"}}"#.utf8))
        #expect(index.weightMap.count == 2)
        let object = try JSONDocument.parse(Array(#"{"\#(nfc)": 1, "\#(nfd)": 2}"#.utf8))
        #expect(object.objectValue?.count == 2)
        #expect(object[nfd]?.intValue == 2 && object[nfc]?.intValue == 1)
        // The index names the NFC tensor, the shard holds the NFD one: both sides are reported.
        let dir = TemporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir.path + "/ck", withIntermediateDirectories: true)
        let shard = SafetensorsBuilder([.init(nfd, "F32", [1], [0, 0, 0, 0])]).bytes()
        #expect(FileManager.default.createFile(atPath: dir.path + "/ck/a.safetensors", contents: Data(shard)))
        #expect(FileManager.default.createFile(
            atPath: dir.path + "/ck/model.safetensors.index.json", contents: Data(#"{"weight_map": {"\#(nfc)": "a.safetensors"}}"#.utf8)))
        let directory = try CheckpointDirectory(path: dir.path + "/ck")
        #expect(directory.problems.contains(.shardTensorNotInIndex(tensor: nfd, shard: "a.safetensors")), "\(directory.problems)")
        #expect(directory.problems.contains(.indexTensorNotInShard(tensor: nfc, shard: "a.safetensors", foundIn: nil)), "\(directory.problems)")
        #expect(directory.entry(named: nfc) == nil && directory.entry(named: nfd) != nil)
        // The index names shard "é.safetensors" in NFC; the folder holds it in NFD: the NFC file is missing.
        let shardNFC = "caf\u{E9}.safetensors", shardNFD = "cafe\u{301}.safetensors"
        try FileManager.default.removeItem(atPath: dir.path + "/ck/a.safetensors")
        let path = Array((dir.url.resolvingSymlinksInPath().path + "/ck/").utf8) + Array(shardNFD.utf8)
        #expect(FileManager.default.createFile(atPath: dir.path + "/ck/tmp", contents: Data(SafetensorsBuilder([.init(nfc, "F32", [1], [0, 0, 0, 0])]).bytes())))
        let renamed = (Array((dir.url.resolvingSymlinksInPath().path + "/ck/tmp").utf8) + [0]).withUnsafeBufferPointer { a in
            (path + [0]).withUnsafeBufferPointer { b in
                a.withMemoryRebound(to: CChar.self) { ac in b.withMemoryRebound(to: CChar.self) { rename(ac.baseAddress!, $0.baseAddress!) } }
            }
        }
        #expect(renamed == 0)
        #expect(FileManager.default.createFile(
            atPath: dir.path + "/ck/model.safetensors.index.json", contents: Data(#"{"weight_map": {"\#(nfc)": "\#(shardNFC)"}}"#.utf8)))
        let missing = try CheckpointDirectory(path: dir.path + "/ck")
        #expect(missing.problems.contains(.shardMissing(shard: shardNFC, tensorCount: 1, example: nfc)), "\(missing.problems)")
    }
}
