import Foundation
import PackFormat
import Repack
import TestSupport
import Testing

/// Issue 14, item 2: what a folder holds is decided in one place, from its records.
@Suite("FolderKind: a folder's kind from its records")
struct FolderKindTests {
    @Test("a checkpoint, a converted folder, a shard set's root and a rank are told apart by their records")
    func kinds() throws {
        let dir = TemporaryDirectory()
        #expect(FolderKind(folder: TestPaths.fixture("k2-thinking-tiny")) == .huggingFace)
        _ = try Converter.convert(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/p")
        #expect(FolderKind(folder: dir.path + "/p") == .pack)
        // A set's root holds shards.json (and no k2pack.json); the set record wins when both are present.
        try FileManager.default.createDirectory(atPath: dir.path + "/set", withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir.path + "/set/" + PackManifest.setFileName))
        #expect(FolderKind(folder: dir.path + "/set") == .shardSet)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: dir.path + "/p/" + PackManifest.setFileName))
        #expect(FolderKind(folder: dir.path + "/p") == .shardSet)
        #expect(FolderKind(folder: dir.path + "/missing") == .huggingFace)
    }
}
