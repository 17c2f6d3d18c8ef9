import Checkpoint
import FileIO
import Foundation
import JSONCore
import TensorCore
import TestSupport
import Testing

@Suite("names and relative paths are taken apart as UTF-8 bytes, not Swift Characters")
struct PathBytesTests {
    /// A separator followed by a combining mark is one Swift Character that is not "/" or "\": every one of these
    /// names reaches outside its folder or holds a separator byte.
    static let hostile = [
        "../\u{301}/x", "x/\u{301}", "/\u{301}etc", "../\u{301}", "..\\\u{301}x", "a\\\u{308}b", "a\u{0}\u{301}b",
    ]

    @Test("a name holding the byte /, \\ or NUL, or that is . or .., is not plain", arguments: hostile + ["", ".", "..", "a/b", "a\\b"])
    func notPlain(_ name: String) {
        #expect(!PathBytes.isPlainName(name))
        #expect(!ShardIndex.isPlainFileName(name))
    }

    @Test("names that only look like . or .. (a combining mark on a dot) are plain names inside the folder",
          arguments: [".\u{301}", "..\u{301}", "\u{301}", "caf\u{E9}", "cafe\u{301}", "model-00001-of-000002.safetensors"])
    func plain(_ name: String) {
        #expect(PathBytes.isPlainName(name))
        #expect(PathBytes.isPlainRelativePath("docs/" + name))
    }

    @Test("components, parent and last component split on the byte /")
    func split() {
        #expect("../\u{301}/x".split(separator: "/").count == 2)  // as Characters: ".." + "/\u{301}" is not split
        #expect(PathBytes.components("../\u{301}/x") == ["..", "\u{301}", "x"])
        #expect(PathBytes.components("a//b") == ["a", "", "b"])
        #expect(PathBytes.parent(of: "docs/\u{301}x") == "docs")
        #expect(PathBytes.parent(of: "a/\u{301}/b").utf8.elementsEqual("a/\u{301}".utf8))
        #expect(PathBytes.parent(of: "x") == "")
        #expect(PathBytes.lastComponent("docs/\u{301}x").utf8.elementsEqual("\u{301}x".utf8))
        #expect(PathBytes.lastComponent("x") == "x")
        #expect(!PathBytes.isPlainRelativePath("docs/../\u{301}../x"))
    }

    /// An index whose one tensor lives in `shard` (its `\` escaped for JSON, every other byte as it is).
    func index(shard: String) -> [UInt8] {
        var bytes = Array(#"{"metadata":{"total_size":4},"weight_map":{"t":""#.utf8)
        bytes += Array(shard.utf8).flatMap { $0 == PathBytes.backslash ? [$0, $0] : [$0] }
        return bytes + Array(#""}}"#.utf8)
    }

    @Test("an index naming a shard through a separator with a combining mark is refused, naming the index and the shard",
          arguments: hostile.filter { !$0.utf8.contains(0) } + ["..\u{301}/../x.safetensors", "sub/\u{301}.safetensors"])
    func indexRefuses(_ shard: String) throws {
        #expect(throws: CheckpointError.unsafeShardName(index: "idx.json", shard: shard)) {
            _ = try ShardIndex.parse(index(shard: shard), fileName: "idx.json")
        }
        let error = CheckpointError.unsafeShardName(index: "idx.json", shard: shard)
        #expect(error.description == "idx.json: shard name \"\(displayed(shard))\" is not a plain file name inside the checkpoint folder")
    }

    @Test("an index naming such a shard in a checkpoint folder is refused when the folder is opened")
    func folderRefuses() throws {
        let dir = TemporaryDirectory()
        let shard = "../\u{301}/x.safetensors"
        dir.write(ShardIndex.fileName, index(shard: shard))
        #expect(throws: CheckpointError.unsafeShardName(index: ShardIndex.fileName, shard: shard)) {
            _ = try CheckpointDirectory(path: dir.path)
        }
    }

    @Test("an index may name shards that look like dots with a combining mark: they are plain names")
    func indexAccepts() throws {
        let index = try ShardIndex.parse(index(shard: "..\u{301}"), fileName: "idx.json")
        #expect(index.shardNames.map { Array($0.utf8) } == [Array("..\u{301}".utf8)])
    }

    @Test("a cache snapshot's NFC and NFD file names link to two blobs: both digests are kept, one per name")
    func blobDigestsAsBytes() throws {
        let dir = TemporaryDirectory()
        let repo = dir.path + "/models--org--tiny", snap = repo + "/snapshots/rev"
        let a = String(repeating: "a", count: 64), b = String(repeating: "b", count: 64)
        dir.write("models--org--tiny/blobs/" + a, [1])
        dir.write("models--org--tiny/blobs/" + b, [2])
        try FileManager.default.createDirectory(atPath: snap, withIntermediateDirectories: true)
        let nfc = "caf\u{E9}.safetensors", nfd = "cafe\u{301}.safetensors"
        try FileManager.default.createSymbolicLink(atPath: snap + "/" + nfc, withDestinationPath: "../../blobs/" + a)
        try FileManager.default.createSymbolicLink(atPath: snap + "/" + nfd, withDestinationPath: "../../blobs/" + b)
        let list = try #require(FolderLinks.blobDigests(folder: snap, names: [nfc, nfd]))
        #expect(list.digests.count == 2)
        #expect(list.digest(for: nfc) == a)
        #expect(list.digest(for: nfd) == b)
    }
}
