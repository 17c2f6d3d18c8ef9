import Checkpoint
import Foundation
import Inspection
import PackFormat
import Repack
import TestSupport
import Testing

/// verify, inspect and export of a k2pack folder check config.json, the kept source headers and the tables
/// against each other (issue 15, item 5), and refuse format fields they do not know.
@Suite("k2pack folders: config, source headers and tables agree")
struct PackSourceCheckTests {
    func converted(_ fixture: String = "deepseek-v3-tiny") throws -> (TemporaryDirectory, String) {
        let dir = TemporaryDirectory()
        _ = try Converter.convert(input: TestPaths.fixture(fixture), output: dir.path + "/p")
        return (dir, dir.path + "/p")
    }

    /// Rewrites a `.k2p` table in place (it must still fit before the data), fixing its length and hash.
    func rewriteTable(_ path: String, _ change: (inout PackTable) -> Void) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        func u64(_ at: Int) -> Int { Int(data[at..<(at + 8)].withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }) }
        let offset = u64(24), length = u64(32), dataOffset = u64(40)
        var table = try JSONDecoder().decode(PackTable.self, from: data[offset..<(offset + length)])
        change(&table)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let bytes = [UInt8](try encoder.encode(table))
        try #require(offset + bytes.count <= dataOffset)
        data.replaceSubrange(offset..<dataOffset, with: bytes + [UInt8](repeating: 0, count: dataOffset - offset - bytes.count))
        withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { data.replaceSubrange(32..<40, with: $0) }
        withUnsafeBytes(of: bytes.withUnsafeBytes { XXHash64.hash($0) }.littleEndian) { data.replaceSubrange(56..<64, with: $0) }
        try data.write(to: URL(fileURLWithPath: path))
    }

    func errors(_ folder: String) throws -> [String] {
        try PackVerifier.verify(folder: folder).findings.filter { $0.severity == .error }.map(\.message)
    }

    /// verify names `expected`; inspect lists it and export refuses with it, writing nothing.
    func expectRefused(_ dir: TemporaryDirectory, _ folder: String, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let found = try errors(folder)
        #expect(found.contains { $0.contains(expected) }, "\(found)", sourceLocation: sourceLocation)
        let inspected = try PackInspectReport(folder: folder)
        #expect(inspected.problems.contains { $0.contains(expected) }, "\(inspected.problems)", sourceLocation: sourceLocation)
        let out = dir.path + "/export-\(UUID().uuidString)"
        do {
            _ = try Exporter.export(input: folder, output: out)
            Issue.record("export accepted it", sourceLocation: sourceLocation)
        } catch {
            #expect("\(error)".contains("run `k2pack verify`"), "\(error)", sourceLocation: sourceLocation)
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []).isEmpty, sourceLocation: sourceLocation)
    }

    @Test("a clean folder has no problems for verify, inspect or export")
    func clean() throws {
        for fixture in ["deepseek-v3-tiny", "k2-thinking-tiny", "k25-tiny"] {
            let (dir, folder) = try converted(fixture)
            #expect(try errors(folder).isEmpty, "\(fixture)")
            #expect(try PackInspectReport(folder: folder).problems.isEmpty, "\(fixture)")
            _ = try Exporter.export(input: folder, output: dir.path + "/e")
        }
    }

    @Test("config.json: a changed hidden size, a missing config, a config that does not parse")
    func config() throws {
        let (dir, folder) = try converted()
        let path = folder + "/config.json"
        let original = try String(contentsOfFile: path, encoding: .utf8)
        try original.replacingOccurrences(of: "\"hidden_size\": 64", with: "\"hidden_size\": 96").write(toFile: path, atomically: true, encoding: .utf8)
        try expectRefused(dir, folder, "model.safetensors: tensor 'model.embed_tokens.weight': shape [256, 64], expected [256, 96] from config.json")
        try original.replacingOccurrences(of: "\"model_type\"", with: "\"model_type_\"").write(toFile: path, atomically: true, encoding: .utf8)
        let unknown = try errors(folder)
        #expect(unknown.contains { $0.contains("model_type") }, "\(unknown)")
        try FileManager.default.removeItem(atPath: path)
        #expect(try errors(folder) == ["\(folder): no config.json: k2pack needs the model's config.json next to its weights"])
        #expect(throws: (any Error).self) { _ = try PackInspectReport(folder: folder) }
        #expect(throws: (any Error).self) { _ = try Exporter.export(input: folder, output: dir.path + "/e") }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir.path + "/e")) ?? []).isEmpty)
    }

    @Test("a table that lies (hash recomputed): shape, dtype, name, source offset, source shard", arguments: [
        "shape", "dtype", "name", "offset", "shard",
    ])
    func tableLies(lie: String) throws {
        let (dir, folder) = try converted()
        var target = ""
        try rewriteTable(folder + "/layer-0000.k2p") { table in
            let i = table.tensors.firstIndex { $0.shape.count == 2 && $0.shape[0] != $0.shape[1] && $0.dtype == .bf16 }!
            target = table.tensors[i].name
            switch lie {
            case "shape": table.tensors[i].shape.reverse()
            case "dtype": table.tensors[i].dtype = .f16
            case "name": table.tensors[i].name = target.replacingOccurrences(of: "model.", with: "modex.")
            case "offset": table.tensors[i].sources[0].offset += 2
            default: table.tensors[i].sources[0].shard = "other.safetensors"
            }
        }
        let expected: String = switch lie {
        case "shape": "layer-0000.k2p: tensor '\(target)' is stored with shape"
        case "dtype": "layer-0000.k2p: tensor '\(target)' is stored as F16, its source '\(target)' is BF16"
        case "name": "it must be named '\(target)'"
        case "offset": "layer-0000.k2p: source '\(target)' is recorded at byte"
        default: "layer-0000.k2p: source '\(target)' is recorded in other.safetensors, but its header is model.safetensors's"
        }
        try expectRefused(dir, folder, expected)
    }

    @Test("an edited source header: a shape the config contradicts, a renamed tensor")
    func editedHeader() throws {
        let (dir, folder) = try converted()
        let path = folder + "/source/model.safetensors.header"
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        // The 8-byte length prefix stays as it is; only the JSON after it is edited.
        let prefix = original.prefix(8), text = String(decoding: original.dropFirst(8), as: UTF8.self)
        // Same length, so the header stays valid: [256, 64] → [64, 256] for the embedding, and a renamed tensor.
        let swapped = text.replacingOccurrences(of: "\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[256,64]", with: "\"model.embed_tokens.weight\":{\"dtype\":\"BF16\",\"shape\":[64,256]")
        try #require(swapped != text)
        try (prefix + Data(swapped.utf8)).write(to: URL(fileURLWithPath: path))
        try expectRefused(dir, folder, "model.safetensors: tensor 'model.embed_tokens.weight': shape [64, 256], expected [256, 64] from config.json")
        let renamed = text.replacingOccurrences(of: "\"model.norm.weight\"", with: "\"model.norx.weight\"")
        try #require(renamed != text)
        try (prefix + Data(renamed.utf8)).write(to: URL(fileURLWithPath: path))
        try expectRefused(dir, folder, "tensor 'model.norx.weight'")
        let found = try errors(folder)
        #expect(found.contains { $0.contains("stores 'model.norm.weight', which no source header lists") }, "\(found)")
        #expect(found.contains { $0.contains("tensor 'model.norm.weight' is missing") }, "\(found)")
    }

    @Test("format fields: header flags, table format, version and alignment, source_index against the kept index")
    func formatFields() throws {
        let (dir, folder) = try converted("k2-thinking-tiny")
        let path = folder + "/layer-0001.k2p"
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        func expectRefusal(_ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
            do {
                _ = try PackFile(path: path, name: "f.k2p")
                Issue.record("accepted", sourceLocation: sourceLocation)
            } catch {
                #expect("\(error)" == message, sourceLocation: sourceLocation)
            }
        }
        for (byte, value, flags) in [(12, UInt8(4), "4"), (13, 1, "100"), (15, 0x80, "80000000")] {
            var data = original
            data[byte] = value
            try data.write(to: URL(fileURLWithPath: path))
            expectRefusal(
                "f.k2p: invalid header: flags 0x\(flags) are not defined in version 1 (this build knows 0x3 (sliced sources, archive)): written by a newer or different tool")
        }
        try original.write(to: URL(fileURLWithPath: path))
        try rewriteTable(path) { $0.version = 2 }
        expectRefusal("f.k2p: invalid tensor table: version 2, expected 1 (the header's)")
        try original.write(to: URL(fileURLWithPath: path))
        try rewriteTable(path) { $0.format = "k3pack" }
        expectRefusal("f.k2p: invalid tensor table: format \"k3pack\", expected \"k2pack\"")
        try original.write(to: URL(fileURLWithPath: path))
        try rewriteTable(path) { $0.alignment = 64 }
        expectRefusal("f.k2p: invalid tensor table: alignment 64, but the header says 4096")
        try original.write(to: URL(fileURLWithPath: path))
        #expect(try errors(folder).isEmpty)
        // source_index: false while the index is kept, true while it is not.
        let manifestPath = folder + "/k2pack.json"
        let manifest = try String(contentsOfFile: manifestPath, encoding: .utf8)
        try manifest.replacingOccurrences(of: "\"source_index\" : true", with: "\"source_index\" : false").write(toFile: manifestPath, atomically: true, encoding: .utf8)
        #expect(throws: PackError.notPack(file: manifestPath, reason: "source_index is false but source/model.safetensors.index.json is kept: the record and the folder disagree")) {
            _ = try PackManifest.read(folder: folder)
        }
        try manifest.write(toFile: manifestPath, atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: folder + "/source/model.safetensors.index.json")
        #expect(throws: PackError.notPack(file: manifestPath, reason: "source_index is true but source/model.safetensors.index.json is missing")) {
            _ = try PackManifest.read(folder: folder)
        }
        #expect(throws: (any Error).self) { _ = try Exporter.export(input: folder, output: dir.path + "/e") }
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/e"))
    }
}
