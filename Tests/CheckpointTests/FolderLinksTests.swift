import Checkpoint
import FileIO
import Foundation
import TestSupport
import Testing

/// Symlinks in checkpoint folders: a Hugging Face cache snapshot works by default (and its blob names verify
/// the shards); a link anywhere else outside the folder is refused unless allowed.
@Suite("symlinks and the Hugging Face cache layout", .serialized)
struct FolderLinksTests {
    @Test("a cache snapshot opens, and its shards are checked against their blob names")
    func cacheSnapshot() throws {
        let dir = TemporaryDirectory()
        let snap = try makeCacheSnapshot(of: "k25-tiny", in: dir.path).snapshot
        let directory = try CheckpointDirectory(path: snap)
        #expect(directory.problems.isEmpty, "\(directory.problems)")
        let digests = try #require(FolderLinks.blobDigests(folder: snap, names: directory.shardNames))
        #expect(digests.digests.count == 6)
    }

    @Test("a link outside the folder is refused by name, and accepted when allowed")
    func outside() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "k25-tiny")
        let elsewhere = dir.path + "/elsewhere.safetensors"
        let shard = "model-00003-of-000006.safetensors"
        try FileManager.default.moveItem(atPath: folder + "/" + shard, toPath: elsewhere)
        try FileManager.default.createSymbolicLink(atPath: folder + "/" + shard, withDestinationPath: elsewhere)
        let refused = try CheckpointDirectory(path: folder)
        let problem = try #require(refused.problems.first { if case .outsideFolder = $0 { true } else { false } })
        #expect(problem.file == shard)
        #expect(problem.description.contains("outside the checkpoint folder") && problem.description.contains("--allow-outside-symlinks"))
        FolderLinks.allowOutside = true
        defer { FolderLinks.allowOutside = false }
        #expect(try CheckpointDirectory(path: folder).problems.isEmpty)
    }

    @Test("a link inside the folder is fine")
    func inside() throws {
        let dir = TemporaryDirectory()
        let folder = dir.copy(fixture: "deepseek-v3-tiny")
        try FileManager.default.moveItem(atPath: folder + "/model.safetensors", toPath: folder + "/real.bin")
        try FileManager.default.createSymbolicLink(atPath: folder + "/model.safetensors", withDestinationPath: "real.bin")
        #expect(try CheckpointDirectory(path: folder).problems.isEmpty)
    }
}
