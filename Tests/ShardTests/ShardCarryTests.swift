import Foundation
import Inspection
import PackFormat
import Repack
import Shard
import TensorCore
import TestSupport
import Testing

/// The files k25-tiny holds besides its tensors, config.json and index.
private func carriedOfFixture() throws -> [String: Data] {
    try folderContents(TestPaths.fixture("k25-tiny")).filter { !$0.key.hasSuffix(".safetensors") && $0.key != "config.json" && $0.key != "model.safetensors.index.json" }
}

private func flip(_ path: String, at offset: Int = 1) throws {
    var data = try Data(contentsOf: URL(fileURLWithPath: path))
    data[offset] ^= 0x02
    try data.write(to: URL(fileURLWithPath: path))
}

@Suite("shard sets carry every non-tensor file: in the set's folder and in every rank's")
struct ShardCarryTests {
    func write(tp: Int, ep: Int, into dir: TemporaryDirectory, input: String = TestPaths.fixture("k25-tiny")) throws -> String {
        let out = dir.path + "/shards"
        _ = try ShardWriter.write(input: input, output: out, options: ShardWriter.Options(layout: ShardLayout(tp: tp, ep: ep, visionOnEveryRank: true)))
        return out
    }

    @Test("every rank is self-contained, verify passes, and merge gives the identical tree", arguments: [(1, 2), (1, 4), (1, 8)])
    func layouts(_ tp: Int, _ ep: Int) throws {
        let dir = TemporaryDirectory()
        let out = try write(tp: tp, ep: ep, into: dir)
        let carried = try carriedOfFixture()
        #expect(carried.count == 18)
        let set = try ShardSetManifest.read(folder: out)
        #expect(set.version == 2 && set.carried.map(\.path).sorted() == carried.keys.sorted())
        for folder in [out] + (0..<(tp * ep)).map({ out + "/" + ShardSetManifest.rankFolder($0) }) {
            for (path, bytes) in carried { #expect(FileManager.default.contents(atPath: folder + "/" + path) == bytes, "\(folder): \(path)") }
        }
        for r in 0..<(tp * ep) {
            #expect(try PackManifest.read(folder: out + "/" + ShardSetManifest.rankFolder(r)).carried == set.carried)
        }
        let report = try ShardVerifier.verify(folder: out)
        #expect(report.passed, "\(report.findings)")
        _ = try ShardMerger.merge(input: out, output: dir.path + "/merged")
        #expect(try folderContents(dir.path + "/merged") == folderContents(TestPaths.fixture("k25-tiny")))
    }

    @Test("a changed carried file in a rank or in the set's folder is named by verify; merge refuses the set's and leaves nothing")
    func changedFiles() throws {
        let dir = TemporaryDirectory()
        let out = try write(tp: 1, ep: 2, into: dir)
        try flip(out + "/rank-0001/docs/deploy_guidance.md")
        try flip(out + "/tokenizer_config.json", at: 5)
        try FileManager.default.removeItem(atPath: out + "/rank-0000/tiktoken.model")
        let report = try ShardVerifier.verify(folder: out)
        let carried = report.findings.filter { $0.code == "carried_file" }
        #expect(carried.compactMap(\.file).sorted() == ["rank-0000/tiktoken.model", "rank-0001/docs/deploy_guidance.md", "tokenizer_config.json"], "\(report.findings)")
        #expect(carried.first { $0.file == "rank-0001/docs/deploy_guidance.md" }?.message.hasPrefix("rank-0001/docs/deploy_guidance.md: carried file changed: SHA-256 ") == true)
        #expect(carried.first { $0.file == "tokenizer_config.json" }?.message.hasPrefix("tokenizer_config.json: carried file changed: SHA-256 ") == true)
        do {
            _ = try ShardMerger.merge(input: out, output: dir.path + "/merged")
            Issue.record("merged a changed carried file")
        } catch let error as PackError {
            guard case let .io(path, operation, reason) = error else { throw error }
            #expect(path == out + "/tokenizer_config.json" && operation == "carry" && reason.hasPrefix("carried file changed: SHA-256 "), "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/merged").isEmpty, "merge left files behind")
    }

    @Test("a checkpoint naming both the NFC and the NFD spelling of a shard is sharded (no trap) and merged back byte for byte")
    func normalizationTwinsShard() throws {
        let dir = TemporaryDirectory()
        let (input, shards) = try normalizationTwins(in: dir)
        let out = try write(tp: 1, ep: 2, into: dir, input: input)
        #expect(try ShardVerifier.verify(folder: out).passed)
        _ = try ShardMerger.merge(input: out, output: dir.path + "/merged")
        for shard in shards {
            #expect(FileManager.default.contents(atPath: dir.path + "/merged/" + shard.name) == shard.bytes, "\(Array(shard.name.unicodeScalars))")
        }
    }

    @Test("shards.json naming a file twice or taking a reserved or rank folder's name is refused", arguments: [
        ("duplicate source shard", "source shard \"model-00001-of-000006.safetensors\" is listed twice"),
        ("source shard config.json", "source shard name \"config.json\" is reserved for the folder's own records"),
        ("source shard shards.json", "source shard name \"shards.json\" is reserved for the folder's own records"),
        ("carried rank folder", "carried file \"rank-0001/x\" takes the name \"rank-0001\", which the folder uses for its own records"),
        ("carried source shard", "carried file \"model-00002-of-000006.safetensors\" takes the name \"model-00002-of-000006.safetensors\", which the folder uses for its own records"),
        ("carried index", "carried file \"model.safetensors.index.json\" takes the name \"model.safetensors.index.json\", which the folder uses for its own records"),
        ("version 1 with carried files", "version 1 records no carried files, but this record lists some"),
        // Separators followed by a combining mark: one Swift Character, still a separator byte.
        ("carried slash + U+0301", "carried file \"\(displayed("../\u{301}/x"))\" is not a plain relative path inside the folder"),
        ("carried backslash + U+0301", "carried file \"\(displayed("a\\\u{301}b"))\" is not a plain relative path inside the folder"),
        ("source shard slash + U+0301", "source shard name \"\(displayed("../\u{301}x.safetensors"))\" is not a plain name inside the folder"),
    ])
    func setRecordNames(_ variant: String, _ reason: String) throws {
        let dir = TemporaryDirectory()
        let out = try write(tp: 1, ep: 2, into: dir)
        let path = out + "/shards.json"
        var o = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        var shards = o["source_shards"] as! [String], list = o["carried"] as! [[String: Any]]
        func carried(_ p: String) -> [String: Any] { ["path": p, "size": 1, "sha256": String(repeating: "0", count: 64)] }
        switch variant {
        case "duplicate source shard": shards.append(shards[0])
        case "source shard config.json": shards[1] = "config.json"
        case "source shard shards.json": shards[1] = "shards.json"
        case "carried rank folder": list.append(carried("rank-0001/x"))
        case "carried source shard": list.append(carried(shards[1]))
        case "carried index": list.append(carried("model.safetensors.index.json"))
        case "version 1 with carried files": o["version"] = 1
        case "carried slash + U+0301": list.append(carried("../\u{301}/x"))
        case "carried backslash + U+0301": list.append(carried("a\\\u{301}b"))
        case "source shard slash + U+0301": shards[1] = "../\u{301}x.safetensors"
        default: Issue.record("unknown variant \(variant)")
        }
        o["source_shards"] = shards
        o["carried"] = list
        try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
        #expect(throws: ShardError.input("\(path): \(reason)")) { _ = try ShardMerger.merge(input: out, output: dir.path + "/merged") }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/merged"))
        #expect(throws: ShardError.input("\(path): \(reason)")) { _ = try ShardVerifier.verify(folder: out) }
    }

    @Test("shards.json with an unknown key, a duplicate key or a wrong type is refused, naming the key", arguments: [
        ("\"format\"", "\"formats\":1,\"format\"", "unknown key \"formats\""),
        ("\"tp\"", "\"pp\":1,\"tp\"", "key \"layout\": unknown key \"pp\""),
        ("\"format\"", "\"format\":\"k2pack-shards\",\"format\"", "duplicate key \"format\""),
        ("\"source_index\":(true|false)", "\"source_index\":\"yes\"", "key \"source_index\": expected a boolean, found a string"),
        ("\"tp\":[0-9]+", "\"tp\":1.0", "key \"layout.tp\": 1.0 is not an integer in the range of Int"),
    ])
    func strictSetRecord(_ find: String, _ replace: String, _ reason: String) throws {
        let dir = TemporaryDirectory()
        let out = try write(tp: 1, ep: 2, into: dir)
        let path = out + "/shards.json"
        // Compact, so that the edits below see one spelling.
        let o = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path)))
        let text = String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.sortedKeys]), as: UTF8.self)
        let range = try #require(text.range(of: find, options: .regularExpression))
        try text.replacingCharacters(in: range, with: replace).write(toFile: path, atomically: false, encoding: .utf8)
        do {
            _ = try ShardSetManifest.read(folder: out)
            Issue.record("read shards.json with \(replace)")
        } catch let error as ShardError {
            guard case .input(let message) = error else { Issue.record("\(error)"); return }
            #expect(message.hasPrefix("\(path): not a valid shard set record: "), "\(message)")
            #expect(message.contains(reason), "\(message)")
        }
    }

    @Test("an input file that would take a rank folder's name is refused before anything is written")
    func rankFolderName() throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "k25-tiny")
        try FileManager.default.createDirectory(atPath: input + "/rank-0001", withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: input + "/rank-0001/notes.txt"))
        #expect(throws: ShardError.input("\(input): carried file \"rank-0001/notes.txt\" takes the name \"rank-0001\", which the folder uses for its own records")) {
            _ = try write(tp: 1, ep: 2, into: dir, input: input)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/shards"))
    }
}
