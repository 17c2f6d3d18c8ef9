import Checkpoint
import Foundation
import Inspection
import PackFormat
import Repack
import TensorCore
import TestSupport
import Testing

@Suite("export checks what it copies and what its folder record names")
struct ExportChecksTests {
    /// Flips one bit of a stored tensor's bytes (its table intact) in a converted folder's file.
    func flipStoredBit(_ path: String, tensor pick: (PackTensor) -> Bool, at offset: Int) throws -> PackTensor {
        let tensor = try #require(try PackFile(path: path).table.tensors.first(where: pick))
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64(tensor.offset + offset))
        let byte = try #require(try handle.read(upToCount: 1)).first! ^ 0x04
        try handle.seek(toOffset: UInt64(tensor.offset + offset))
        try handle.write(contentsOf: Data([byte]))
        try handle.close()
        return tensor
    }

    @Test("a flipped bit in any stored tensor is refused by file and tensor, and the shards already written are removed",
          arguments: [
            ("layer-0002.k2p", "experts.*.down_proj.weight_packed", 17),  // an expert stack
            ("layer-0000.k2p", "input_layernorm.weight", 0),  // a small tensor of the first shard
            ("globals.k2p", "lm_head.weight", 100),  // the last tensors exported
          ])
    func flippedBit(_ file: String, _ suffix: String, _ offset: Int) throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed", out = dir.path + "/out"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: packed)
        let tensor = try flipStoredBit(packed + "/" + file, tensor: { $0.name.hasSuffix(suffix) }, at: offset)
        do {
            _ = try Exporter.export(input: packed, output: out)
            Issue.record("exported corrupt data")
        } catch let error as PackError {
            guard case let .checksumMismatch(f, t, expected, _) = error else { throw error }
            #expect(f == file && t == tensor.name && expected == tensor.xxh64, "\(error)")
            #expect(error.description.hasPrefix("\(file): tensor '\(tensor.name)': data is corrupt: xxHash64 "), "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).isEmpty, "a failed export left files behind")
    }

    @Test("a damaged archive (.k2z) is refused too, and leaves nothing behind")
    func damagedArchive() throws {
        let dir = TemporaryDirectory()
        let packed = dir.path + "/packed", out = dir.path + "/out"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: packed, options: .init(compressionLevel: 3))
        let tensor = try flipStoredBit(packed + "/layer-0001.k2z", tensor: { $0.name.hasSuffix("experts.*.up_proj.weight_scale") }, at: 12)
        do {
            _ = try Exporter.export(input: packed, output: out)
            Issue.record("exported a damaged archive")
        } catch let error as PackError {
            // Depending on where the bit lands, zstd refuses the frame or the checksum does: either names both.
            #expect(error.description.hasPrefix("layer-0001.k2z: tensor '\(tensor.name)': "), "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: out).isEmpty, "a failed export left files behind")
    }

    /// A converted k25-tiny whose `k2pack.json` is edited as JSON by `change`.
    func edited(_ change: (inout [String: Any]) -> Void, dir: TemporaryDirectory) throws -> String {
        let packed = dir.path + "/packed-\(UUID().uuidString)"
        _ = try Converter.convert(input: TestPaths.fixture("k25-tiny"), output: packed)
        let path = packed + "/" + PackManifest.fileName
        var object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        change(&object)
        try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path))
        return packed
    }

    static let firstShard = "model-00001-of-000006.safetensors"

    @Test("a folder record naming a file twice, taking a reserved name or a carried file's name is refused before anything is written",
          arguments: [
            ("duplicate source shard", "source shard \"\(firstShard)\" is listed twice"),
            ("source shard config.json", "source shard name \"config.json\" is reserved for the folder's own records"),
            ("source shard k2pack.json", "source shard name \"k2pack.json\" is reserved for the folder's own records"),
            ("source shard index", "source shard name \"model.safetensors.index.json\" is reserved for the folder's own records"),
            ("duplicate data file", "data file \"layer-0000.k2p\" is listed twice"),
            ("data file config.json", "data file name \"config.json\" is reserved for the folder's own records"),
            ("data file with a slash", "data file name \"../layer-0000.k2p\" is not a plain name inside the folder"),
            ("carried named as a source shard", "carried file \"\(firstShard)\" takes the name \"\(firstShard)\", which the folder uses for its own records"),
            ("carried named as a data file", "carried file \"globals.k2p\" takes the name \"globals.k2p\", which the folder uses for its own records"),
            ("carried config.json", "carried file \"config.json\" takes the name \"config.json\", which the folder uses for its own records"),
            ("carried under source/", "carried file \"source/\(firstShard).header\" takes the name \"source\", which the folder uses for its own records"),
            ("carried twice", "carried file \"LICENSE\" is listed twice"),
            ("carried climbing out", "carried file \"docs/../../x\" is not a plain relative path inside the folder"),
            ("carried absolute", "carried file \"/etc/hostname\" is not a plain relative path inside the folder"),
            ("carried file and folder", "carried file \"docs\" is also a folder holding \"docs/deploy_guidance.md\""),
            // A separator followed by a combining mark is one Swift Character that is not "/" or "\\": the names are
            // checked as bytes, so each of these is still refused.
            ("carried slash + U+0301", "carried file \"\(displayed("../\u{301}/x"))\" is not a plain relative path inside the folder"),
            ("carried dot-dot slash + U+0301", "carried file \"\(displayed("docs/../\u{301}../x"))\" is not a plain relative path inside the folder"),
            ("carried backslash + U+0301", "carried file \"\(displayed("docs\\\u{301}x"))\" is not a plain relative path inside the folder"),
            ("carried dot-dot + U+0301", "carried file \"\(displayed("../\u{301}"))\" is not a plain relative path inside the folder"),
            ("data file slash + U+0301", "data file name \"\(displayed("../\u{301}layer-0000.k2p"))\" is not a plain name inside the folder"),
            ("source shard slash + U+0301", "source shard name \"\(displayed("x/\u{301}.safetensors"))\" is not a plain name inside the folder"),
            ("source shard backslash + U+0308", "source shard name \"\(displayed("..\\\u{308}x.safetensors"))\" is not a plain name inside the folder"),
            ("version 3", "folder record version 3 is not supported (this build reads versions 1 to 2)"),
            ("version 1 with carried files", "version 1 records no carried files, but this record lists some"),
            ("version 2 with an empty list", "version 2 records carried files, but this record's carried list is empty"),
            ("version 2 without a list", "version 2 records carried files, but this record has no carried list"),
          ])
    func recordNames(_ variant: String, _ reason: String) throws {
        let dir = TemporaryDirectory()
        func carried(_ path: String) -> [String: Any] { ["path": path, "size": 1, "sha256": String(repeating: "0", count: 64)] }
        let packed = try edited({ o in
            var shards = o["source_shards"] as! [String], files = o["files"] as! [String], list = o["carried"] as! [[String: Any]]
            switch variant {
            case "duplicate source shard": shards.append(shards[0])
            case "source shard config.json": shards[2] = "config.json"
            case "source shard k2pack.json": shards[2] = "k2pack.json"
            case "source shard index": shards[2] = "model.safetensors.index.json"
            case "duplicate data file": files.append(files[0])
            case "data file config.json": files[1] = "config.json"
            case "data file with a slash": files[0] = "../" + files[0]
            case "carried named as a source shard": list.append(carried(Self.firstShard))
            case "carried named as a data file": list.append(carried("globals.k2p"))
            case "carried config.json": list.append(carried("config.json"))
            case "carried under source/": list.append(carried("source/\(Self.firstShard).header"))
            case "carried twice": list.append(list.first { ($0["path"] as! String) == "LICENSE" }!)
            case "carried climbing out": list.append(carried("docs/../../x"))
            case "carried absolute": list.append(carried("/etc/hostname"))
            case "carried file and folder": list.append(carried("docs"))
            case "carried slash + U+0301": list.append(carried("../\u{301}/x"))
            case "carried dot-dot slash + U+0301": list.append(carried("docs/../\u{301}../x"))
            case "carried backslash + U+0301": list.append(carried("docs\\\u{301}x"))
            case "carried dot-dot + U+0301": list.append(carried("../\u{301}"))
            case "data file slash + U+0301": files[0] = "../\u{301}layer-0000.k2p"
            case "source shard slash + U+0301": shards[2] = "x/\u{301}.safetensors"
            case "source shard backslash + U+0308": shards[2] = "..\\\u{308}x.safetensors"
            case "version 3": o["version"] = 3
            case "version 1 with carried files": o["version"] = 1
            case "version 2 with an empty list": list = []
            case "version 2 without a list": break
            default: Issue.record("unknown variant \(variant)")
            }
            o["source_shards"] = shards
            o["files"] = files
            o["carried"] = variant == "version 2 without a list" ? nil : list
        }, dir: dir)
        let out = dir.path + "/out"
        #expect(throws: PackError.notPack(file: packed + "/k2pack.json", reason: reason)) {
            _ = try Exporter.export(input: packed, output: out)
        }
        #expect(!FileManager.default.fileExists(atPath: out), "\(variant): wrote something")
        let report = try? PackVerifier.verify(folder: packed)
        #expect(report == nil, "\(variant): verify accepted the record")
    }

    @Test("a source tensor stored twice (a data file listed under two names) is refused, not exported from whichever came last")
    func storedTwice() throws {
        let dir = TemporaryDirectory()
        let packed = try edited({ o in o["files"] = (o["files"] as! [String]) + ["layer-0000-copy.k2p"] }, dir: dir)
        try FileManager.default.copyItem(atPath: packed + "/layer-0000.k2p", toPath: packed + "/layer-0000-copy.k2p")
        let first = try #require(try PackFile(path: packed + "/layer-0000.k2p").table.tensors.first)
        #expect(throws: PackError.tensorInvalid(file: "layer-0000-copy.k2p", tensor: first.sources[0].name, reason: "source tensor stored twice (also in layer-0000.k2p)")) {
            _ = try Exporter.export(input: packed, output: dir.path + "/out")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/out"))
    }

    @Test("names are compared as bytes: NFC and NFD spellings are two files, not one listed twice")
    func namesAsBytes() {
        let nfc = "caf\u{E9}.safetensors", nfd = "cafe\u{301}.safetensors"
        #expect(nfc == nfd)  // Swift's String equality is canonical equivalence: not what the file system compares
        #expect(PackManifest.namesProblem(files: [], sourceShards: [nfc, nfd], carried: []) == nil)
        #expect(PackManifest.namesProblem(files: ["caf\u{E9}.k2p", "cafe\u{301}.k2p"], sourceShards: [], carried: []) == nil)
        #expect(PackManifest.namesProblem(files: [], sourceShards: [], carried: ["docs/caf\u{E9}.md", "docs/cafe\u{301}.md"]) == nil)
        // A carried name canonically equal to, but not the bytes of, a reserved one is another file: allowed.
        #expect(PackManifest.namesProblem(files: [], sourceShards: [nfc], carried: [nfd]) == nil)
        #expect(PackManifest.namesProblem(files: [], sourceShards: [nfc, nfc], carried: []) == "source shard \"\(nfc)\" is listed twice")
        #expect(PackManifest.namesProblem(files: [], sourceShards: [nfc], carried: [nfc]) == "carried file \"\(nfc)\" takes the name \"\(nfc)\", which the folder uses for its own records")
    }
}
