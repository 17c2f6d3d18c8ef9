import Checkpoint
import FileIO
import Forward
import Foundation
import GGUF
import GGUFModel
import GGUFUnpack
import Inspection
import ModelStore
import Parity
import TensorCore
import Testing
import TestSupport

/// GGUF → Hugging Face: `dequantize FILE.gguf` and `convert FILE.gguf --to hf` on the deepseek2 fixtures
/// (scripts/fixtures/make_gguf_models.py).
@Suite("GGUF unpack")
struct GGUFUnpackTests {
    static func gguf(_ name: String) -> String { TestPaths.fixture("gguf-models/\(name).gguf") }
    static let references = TestPaths.fixture("references/gguf-models.h5")

    /// Every tensor of a checkpoint folder: name → (dtype, shape, bytes).
    static func tensors(_ folder: String) throws -> [String: (DType, [Int], [UInt8])] {
        let dir = try CheckpointDirectory(path: folder)
        var out: [String: (DType, [Int], [UInt8])] = [:]
        for shard in dir.shards.compactMap({ $0 }) {
            for entry in shard.tensors {
                out[entry.name] = (entry.dtype, entry.shape, Array(try shard.bytes(of: entry)))
            }
        }
        return out
    }

    /// The round trip of issue 18: the lossless GGUF of k2-thinking-tiny back to a Hugging Face folder with INT4
    /// experts gives the fixture's tensors byte for byte (the first difference is named), and verify passes.
    @Test("convert --to hf: the lossless GGUF gives k2-thinking-tiny's tensors byte for byte; verify passes")
    func roundTripLossless() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/back-hf"
        var options = GGUFUnpacker.Options(repackExperts: true)
        options.shardBytes = 64 << 10
        let report = try GGUFUnpacker.unpack(input: Self.gguf("k2-thinking-tiny.BF16-Q4_0"), output: out, options: options)
        #expect(report.repackedModules == 2 * 8 * 3, "\(report)")
        #expect(report.shards.count > 1, "small shards: \(report.shards)")
        #expect(FileManager.default.fileExists(atPath: out + "/" + ShardIndex.fileName))
        let source = try Self.tensors(TestPaths.fixture("k2-thinking-tiny"))
        let written = try Self.tensors(out)
        #expect(Set(written.keys) == Set(source.keys), "only in source: \(Set(source.keys).subtracting(written.keys).sorted().prefix(5)), only written: \(Set(written.keys).subtracting(source.keys).sorted().prefix(5))")
        for name in source.keys.sorted() {
            guard let (dtype, shape, bytes) = source[name], let (wDType, wShape, wBytes) = written[name] else { continue }
            #expect(wDType == dtype && wShape == shape, "\(name): \(wDType.rawValue) \(wShape), source \(dtype.rawValue) \(shape)")
            if let byte = zip(bytes, wBytes).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset ?? (bytes.count == wBytes.count ? nil : min(bytes.count, wBytes.count)) {
                Issue.record("\(name): first differing byte \(byte) (source \(bytes.count) bytes, written \(wBytes.count))")
                return
            }
        }
        let verify = try Verifier.verify(path: out)
        #expect(verify.passed, "\(verify.renderText())")
        // The config is a flat DeepSeek-V3 config with the fixture's quantization_config.
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        #expect(config?["model_type"] as? String == "deepseek_v3")
        let q = config?["quantization_config"] as? [String: Any]
        #expect(q?["format"] as? String == "pack-quantized")
        let rope = config?["rope_scaling"] as? [String: Any]
        #expect(rope?["beta_fast"] as? Double == 1 && rope?["mscale_all_dim"] as? Double == 1 && rope?["factor"] as? Double == 16)
        #expect(rope?["original_max_position_embeddings"] as? Int == 256)
        #expect(config?["topk_method"] as? String == "noaux_tc" && config?["scoring_func"] as? String == "sigmoid")
    }

    /// Item 3: the f32 folder dequantize writes runs the forward pass to the numbers the GGUF gives directly, and
    /// to the float64 oracle's logits (transformers on gguf-py's dequantized weights).
    @Test("dequantize --dtype f32: the folder's logits are the GGUF's and the float64 oracle's", arguments: [
        ("k2-thinking-tiny.Q4_0", "k2-thinking-tiny.h5:/exact"),
        ("deepseek-v3-tiny.Q8_0", "deepseek-v3-tiny.h5:/fp32"),
        ("k25-tiny.Q8_0", "k25-tiny.h5:/exact"),
    ])
    func dequantizeParity(name: String, reference: String) throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/hf"
        let report = try GGUFUnpacker.unpack(input: Self.gguf(name), output: out, options: GGUFUnpacker.Options(dtype: .f32))
        #expect(report.dtype == "F32" && report.repackedModules == 0)
        let ref = try ReferenceDump(spec: TestPaths.fixture("references/" + reference))
        let direct = try ForwardPass(weights: try ForwardModel.open(Self.gguf(name)).weights, threads: 2).logits(for: ref.inputIDs, batch: ref.batch)
        let opened = try ForwardModel.open(out)
        #expect(opened.kind == .huggingFace)
        let folder = try ForwardPass(weights: opened.weights, threads: 2).logits(for: ref.inputIDs, batch: ref.batch)
        #expect(folder.count == direct.count)
        let worst = zip(folder, direct).map { abs($0 - $1) }.max() ?? .infinity
        // The same weights through two storage paths (plain F32 views vs GGUF rows decoded a block at a time): the
        // GEMMs sum in different blockings, measured ≤ 1.5e-7 on the three fixtures.
        #expect(worst <= 1e-6, "max |Δ| folder vs GGUF \(worst)")
        let oracle = try #require(try ReferenceDump(spec: Self.references + ":/" + name).logits())
        let worstOracle = zip(oracle.values, folder).map { abs($0 - $1) }.max() ?? .infinity
        #expect(worstOracle <= 1e-5, "max |Δ| folder vs float64 oracle \(worstOracle)")
        let verify = try Verifier.verify(path: out)
        #expect(verify.passed, "\(verify.renderText())")
    }

    @Test("parity of the dequantized Q4_0 folder passes against the dump of the file's dequantized weights")
    func dequantizedFolderParity() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/hf"
        _ = try GGUFUnpacker.unpack(input: Self.gguf("k2-thinking-tiny.Q4_0"), output: out, options: GGUFUnpacker.Options(dtype: .f32))
        let ref = try ReferenceDump(spec: Self.references + ":/k2-thinking-tiny.Q4_0")
        let pass = ForwardPass(weights: try ForwardModel.open(out).weights, threads: 2)
        let report = try ParityRun.run(model: out, forward: pass, reference: ref)
        #expect(report.pass, "\(report.renderText())")
    }

    @Test("dequantize --dtype bf16: BF16 everywhere but the F32 router bias, experts unstacked, kv_b_proj rebuilt")
    func dequantizeBF16() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/hf"
        let report = try GGUFUnpacker.unpack(input: Self.gguf("k2-thinking-tiny.BF16-Q4_0"), output: out)
        #expect(report.dtype == "BF16")
        let written = try Self.tensors(out)
        #expect(written["model.layers.1.mlp.experts.7.down_proj.weight"]?.1 == [64, 32])
        #expect(written["model.layers.1.mlp.gate.e_score_correction_bias"]?.0 == .f32)
        #expect(written["model.layers.2.self_attn.kv_b_proj.weight"]?.0 == .bf16)
        #expect(written.values.allSatisfy { $0.0 == .bf16 || $0.0 == .f32 })
        #expect(written.keys.filter { $0.hasSuffix("e_score_correction_bias") }.count == 2)
        // BF16 tensors of the GGUF (kv_b from its halves) are the source's bytes.
        let source = try Self.tensors(TestPaths.fixture("k2-thinking-tiny"))
        for name in ["model.layers.2.self_attn.kv_b_proj.weight", "model.embed_tokens.weight", "lm_head.weight", "model.norm.weight", "model.layers.1.mlp.gate.weight"] {
            #expect(written[name]?.2 == source[name]?.2, "\(name)")
        }
        // An expert: exact q·s, rounded to BF16, is what the INT4 dequantizer writes.
        let verify = try Verifier.verify(path: out)
        #expect(verify.passed, "\(verify.renderText())")
    }

    /// The layout rule: `--layout`, else the `k2pack.source.model_type` key, else deepseek-v3.
    @Test("k2pack.source.model_type picks the layout; an unknown one is said and the flat layout written", arguments: [
        ("kimi_k2", "kimi_k2", false), ("deepseek_v3", "deepseek_v3", false), ("llama_xx", "deepseek_v3", true), ("kimi_k25", "kimi_k2", true),
    ])
    func sourceModelType(recorded: String, written: String, noted: Bool) throws {
        let dir = TemporaryDirectory()
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: Self.gguf("k2-thinking-tiny.Q4_0"))))
        GGUFPatch.addStrings(&bytes, [(UnpackLayout.sourceModelTypeKey, recorded)])
        let input = dir.write("recorded.gguf", bytes)
        #expect(try GGUFFile(path: input)[UnpackLayout.sourceModelTypeKey]?.stringValue == recorded)
        let out = dir.path + "/hf"
        let report = try GGUFUnpacker.unpack(input: input, output: out)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        #expect(config?["model_type"] as? String == written)
        #expect(report.notes.contains { $0.contains("k2pack.source.model_type is \"\(recorded)\"") } == noted, "\(report.notes)")
        // --layout wins over the key.
        let flat = try GGUFUnpacker.unpack(input: input, output: dir.path + "/flat", options: GGUFUnpacker.Options(layout: .deepseekV3))
        #expect(flat.layout == "deepseek-v3")
    }

    @Test("a split set, given by either part, gives the single file's checkpoint byte for byte")
    func splitSet() throws {
        let dir = TemporaryDirectory()
        let whole = Self.gguf("k2-thinking-tiny.BF16-Q4_0")
        let parts = try GGUFPatch.split(whole, firstCount: 20, into: dir, prefix: "m")
        let single = dir.path + "/single"
        _ = try GGUFUnpacker.unpack(input: whole, output: single, options: GGUFUnpacker.Options(repackExperts: true))
        let expected = try Self.tensors(single)
        for (i, part) in parts.enumerated() {
            #expect(try GGUF.GGUFModel(path: part).parts.count == 2)
            let out = dir.path + "/from-part-\(i + 1)"
            let report = try GGUFUnpacker.unpack(input: part, output: out, options: GGUFUnpacker.Options(repackExperts: true))
            #expect(report.repackedModules == 48)
            let written = try Self.tensors(out)
            #expect(written.count == expected.count)
            for (name, value) in expected { #expect(written[name]?.2 == value.2, "\(name)") }
        }
    }

    /// K2.5: the text model from the GGUF under `language_model.`, the vision tower and config from a K2.5 folder.
    @Test("--vision-from a K2.5 folder: a K2.5 checkpoint (nested config, language_model. prefix) verify passes; f32 runs to the GGUF's logits")
    func k25WithVision() throws {
        let dir = TemporaryDirectory()
        let input = Self.gguf("k25-tiny.Q8_0")
        let folder = TestPaths.fixture("k25-tiny")
        let out = dir.path + "/k25"
        let report = try GGUFUnpacker.unpack(input: input, output: out, options: GGUFUnpacker.Options(visionFrom: folder))
        #expect(report.layout == "k25")
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        #expect(config?["model_type"] as? String == "kimi_k25")
        #expect((config?["text_config"] as? [String: Any])?["model_type"] as? String == "kimi_k2")
        #expect(config?["vision_config"] != nil)
        let written = try Self.tensors(out)
        let source = try Self.tensors(folder)
        #expect(written["language_model.model.embed_tokens.weight"] != nil && written["model.embed_tokens.weight"] == nil)
        let visionNames = source.keys.filter { !$0.hasPrefix("language_model.") }
        #expect(!visionNames.isEmpty)
        for name in visionNames { #expect(written[name]?.2 == source[name]?.2, "\(name)") }
        // The source's names, its INT4 modules as plain weights (dequantize).
        let expectedNames = Set(source.keys.compactMap { name -> String? in
            if name.hasSuffix(".weight_packed") { return String(name.dropLast("_packed".count)) }
            return name.hasSuffix(".weight_scale") || name.hasSuffix(".weight_shape") ? nil : name
        })
        #expect(Set(written.keys) == expectedNames, "\(Set(written.keys).symmetricDifference(expectedNames).sorted().prefix(5))")
        let verify = try Verifier.verify(path: out)
        #expect(verify.passed, "\(verify.renderText())")

        let f32 = dir.path + "/k25-f32"
        _ = try GGUFUnpacker.unpack(input: input, output: f32, options: GGUFUnpacker.Options(dtype: .f32, visionFrom: folder))
        #expect(try Verifier.verify(path: f32).passed)
        let ref = try ReferenceDump(spec: TestPaths.fixture("references/k25-tiny.h5:/exact"))
        let direct = try ForwardPass(weights: try ForwardModel.open(input).weights, threads: 2).logits(for: ref.inputIDs, batch: ref.batch)
        let fromFolder = try ForwardPass(weights: try ForwardModel.open(f32).weights, threads: 2).logits(for: ref.inputIDs, batch: ref.batch)
        let worst = zip(direct, fromFolder).map { abs($0 - $1) }.max() ?? .infinity
        #expect(direct.count == fromFolder.count && worst <= 1e-6, "max |Δ| \(worst)")
    }

    @Test("a tied embedding: no lm_head written, tie_word_embeddings true")
    func tiedEmbedding() throws {
        let dir = TemporaryDirectory()
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: Self.gguf("k2-thinking-tiny.Q4_0"))))
        // output.weight renamed to a tensor the map does not read: the head is tied.
        try GGUFPatch.rename(&bytes, "output.weight", to: "outpux.weight")
        let input = dir.write("tied.gguf", bytes)
        let out = dir.path + "/hf"
        let report = try GGUFUnpacker.unpack(input: input, output: out)
        let written = try Self.tensors(out)
        #expect(written["lm_head.weight"] == nil)
        #expect(report.notes.contains { $0.contains("tied") })
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        #expect(config?["tie_word_embeddings"] as? Bool == true)
    }
}

/// Small edits of a fixture GGUF's header bytes (same lengths, so offsets stay valid).
enum GGUFPatch {
    static func find(_ bytes: [UInt8], _ needle: [UInt8]) -> Int? {
        guard needle.count <= bytes.count else { return nil }
        for i in 0...(bytes.count - needle.count) where bytes[i] == needle[0] && Array(bytes[i..<(i + needle.count)]) == needle { return i }
        return nil
    }

    /// Renames a tensor (names of equal length).
    static func rename(_ bytes: inout [UInt8], _ name: String, to new: String) throws {
        precondition(name.utf8.count == new.utf8.count)
        let needle = withUnsafeBytes(of: UInt64(name.utf8.count).littleEndian) { Array($0) } + Array(name.utf8)
        let at = try #require(find(bytes, needle))
        bytes.replaceSubrange((at + 8)..<(at + needle.count), with: Array(new.utf8))
    }

    /// Adds string keys after the header's counts; a padding key keeps the header's growth a multiple of the
    /// alignment (32), so the data section moves whole and the tensors' relative offsets stay valid.
    static func addStrings(_ bytes: inout [UInt8], _ pairs: [(String, String)]) {
        func kv(_ key: String, _ value: String) -> [UInt8] {
            withUnsafeBytes(of: UInt64(key.utf8.count).littleEndian) { Array($0) } + Array(key.utf8) + [8, 0, 0, 0]
                + withUnsafeBytes(of: UInt64(value.utf8.count).littleEndian) { Array($0) } + Array(value.utf8)
        }
        var added = pairs.flatMap { kv($0.0, $0.1) }
        let padKey = "test.pad"
        let bare = kv(padKey, "").count
        added += kv(padKey, String(repeating: "x", count: (32 - (added.count + bare) % 32) % 32))
        let count = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 16, as: UInt64.self) }
        bytes.replaceSubrange(16..<24, with: withUnsafeBytes(of: (UInt64(littleEndian: count) + UInt64(pairs.count + 1)).littleEndian) { Array($0) })
        bytes.insert(contentsOf: added, at: 24)
    }

    /// The fixture cut into a split set as gguf-split names and keys it: part 1 holds every metadata key of the
    /// original (copied as bytes) and the first `firstCount` tensors, part 2 the rest; both get `split.no`,
    /// `split.count` and `split.tensors.count`. Returns the parts' paths.
    static func split(_ path: String, firstCount: Int, into dir: TemporaryDirectory, prefix: String) throws -> [String] {
        let file = try GGUFFile(path: path)
        let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        func str(_ s: String) -> [UInt8] { le(UInt64(s.utf8.count)) + Array(s.utf8) }
        // The original key-value section: from the counts to the first tensor's name.
        let firstName = try #require(file.tensors.first).name
        let kvEnd = try #require(find(Array(bytes[24...]), str(firstName))) + 24
        let originalKVs = Array(bytes[24..<kvEnd])
        let groups = [Array(file.tensors[..<firstCount]), Array(file.tensors[firstCount...])]
        var paths: [String] = []
        for (no, tensors) in groups.enumerated() {
            var kvs = no == 0 ? originalKVs : str("general.architecture") + le(UInt32(8)) + str("deepseek2")
            let keys = (no == 0 ? file.metadata.count : 1) + 3
            kvs += str("split.no") + le(UInt32(2)) + le(UInt16(no))
            kvs += str("split.count") + le(UInt32(2)) + le(UInt16(2))
            kvs += str("split.tensors.count") + le(UInt32(5)) + le(Int32(file.tensors.count))
            var infos: [UInt8] = [], data: [UInt8] = []
            for t in tensors {
                infos += str(t.name) + le(UInt32(t.ne.count)) + t.ne.flatMap { le(UInt64($0)) } + le(t.type.rawValue) + le(UInt64(data.count))
                data += Array(try file.bytes(of: t))
                while data.count % 32 != 0 { data.append(0) }
            }
            var out = Array("GGUF".utf8) + le(UInt32(3)) + le(UInt64(tensors.count)) + le(UInt64(keys)) + kvs + infos
            while out.count % 32 != 0 { out.append(0) }
            paths.append(dir.write("\(prefix)-0000\(no + 1)-of-00002.gguf", out + data))
        }
        return paths
    }

    /// Replaces a string value (of equal length) of `key`.
    static func setString(_ bytes: inout [UInt8], key: String, from old: String, to new: String) throws {
        precondition(old.utf8.count == new.utf8.count)
        let needle = Array(key.utf8) + [8, 0, 0, 0] + withUnsafeBytes(of: UInt64(old.utf8.count).littleEndian) { Array($0) } + Array(old.utf8)
        let at = try #require(find(bytes, needle))
        bytes.replaceSubrange((at + needle.count - old.utf8.count)..<(at + needle.count), with: Array(new.utf8))
    }
}

/// The refusals: each with its error and message, and nothing left behind.
@Suite("GGUF unpack errors")
struct GGUFUnpackErrorTests {
    static let lossless = GGUFUnpackTests.gguf("k2-thinking-tiny.BF16-Q4_0")

    func fixtureBytes(_ name: String = "k2-thinking-tiny.BF16-Q4_0") throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: GGUFUnpackTests.gguf(name))))
    }

    @Test("an output folder that exists and is not empty is refused before any work")
    func outputNotEmpty() throws {
        let dir = TemporaryDirectory()
        dir.write("out/keep.txt", Array("mine".utf8))
        let out = dir.path + "/out"
        #expect(throws: FileIOError.outputExists(path: out)) { _ = try GGUFUnpacker.unpack(input: Self.lossless, output: out) }
        do { _ = try GGUFUnpacker.unpack(input: Self.lossless, output: out) } catch {
            #expect("\(error)".contains("already exists and is not empty"), "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == ["keep.txt"])
    }

    @Test("an architecture other than deepseek2 is refused by name")
    func unsupportedArchitecture() throws {
        let dir = TemporaryDirectory()
        var bytes = try fixtureBytes()
        try GGUFPatch.setString(&bytes, key: "general.architecture", from: "deepseek2", to: "qwen3moex")
        let input = dir.write("other.gguf", bytes)
        let out = dir.path + "/out"
        do {
            _ = try GGUFUnpacker.unpack(input: input, output: out)
            Issue.record("unpacked an unknown architecture")
        } catch let error as GGUFUnpackError {
            #expect(error == .source(.unknownArchitecture(file: input, found: "qwen3moex", known: ["deepseek2"])))
            #expect(error.description.contains("other.gguf") && error.description.contains("\"qwen3moex\"") && error.description.contains("\"deepseek2\""), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("a missing tensor is refused with its name and slot")
    func missingTensor() throws {
        let dir = TemporaryDirectory()
        var bytes = try fixtureBytes()
        try GGUFPatch.rename(&bytes, "blk.2.attn_v_b.weight", to: "blk.2.attn_v_x.weight")
        let input = dir.write("missing.gguf", bytes)
        let out = dir.path + "/out"
        do {
            _ = try GGUFUnpacker.unpack(input: input, output: out)
            Issue.record("unpacked a file with a missing tensor")
        } catch let error as GGUFUnpackError {
            #expect(error == .source(.missingTensor(file: input, tensor: "blk.2.attn_v_b.weight", slot: "attn_kv_b")))
            #expect(error.description.contains("missing.gguf: tensor blk.2.attn_v_b.weight (slot attn_kv_b) is missing"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("--to hf: a Q4_0 scale BF16 cannot hold is refused naming tensor, expert, row and group")
    func inexactScale() throws {
        let dir = TemporaryDirectory()
        var bytes = try fixtureBytes()
        let file = try GGUFFile(path: Self.lossless)
        let info = try #require(file.tensor(named: "blk.1.ffn_gate_exps.weight"))
        // Expert 3, row 5, group 1 of ne {64, 32, 8}: two groups per row.
        let block = (3 * 32 + 5) * 2 + 1
        let at = file.dataStart + info.offset + block * 18
        bytes[at] = 0x01
        bytes[at + 1] = 0x3C  // f16 1.0009765625: ten mantissa bits, BF16 has seven
        let input = dir.write("inexact.gguf", bytes)
        let out = dir.path + "/out"
        do {
            // Small shards: the block is reached after earlier shards were committed; they go too.
            var options = GGUFUnpacker.Options(repackExperts: true)
            options.shardBytes = 16 << 10
            _ = try GGUFUnpacker.unpack(input: input, output: out, options: options)
            Issue.record("repacked an inexact scale")
        } catch let error as GGUFUnpackError {
            #expect(error == .inexactScale(file: input, tensor: "blk.1.ffn_gate_exps.weight", expert: 3, row: 5, group: 1, value: 1.0009765625))
            #expect(error.description.contains("inexact.gguf: tensor blk.1.ffn_gate_exps.weight, expert 3, row 5, group 1: Q4_0 scale d = 1.0009766"), "\(error)")
            #expect(error.description.contains("k2pack dequantize"))
        }
        #expect(!FileManager.default.fileExists(atPath: out))
        // dequantize of the same file is fine: the block is (n − 8)·d whatever d is.
        _ = try GGUFUnpacker.unpack(input: input, output: dir.path + "/deq")
    }

    @Test("the k25 layout without --vision-from is refused: a text GGUF holds no vision tower")
    func k25Layout() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/out"
        do {
            _ = try GGUFUnpacker.unpack(input: GGUFUnpackTests.gguf("k25-tiny.Q8_0"), output: out, options: GGUFUnpacker.Options(layout: .k25))
            Issue.record("wrote a k25 layout")
        } catch let error as GGUFUnpackError {
            guard case .layout = error else { Issue.record("\(error)"); return }
            #expect(error.description.contains("k25-tiny.Q8_0.gguf") && error.description.contains("give --vision-from a K2.5 folder"), "\(error)")
        }
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    @Test("--vision-from a folder that is not K2.5, or with another layout, is refused")
    func visionFromRefused() throws {
        let dir = TemporaryDirectory()
        let input = GGUFUnpackTests.gguf("k25-tiny.Q8_0")
        let folder = TestPaths.fixture("k2-thinking-tiny")
        do {
            _ = try GGUFUnpacker.unpack(input: input, output: dir.path + "/a", options: GGUFUnpacker.Options(visionFrom: folder))
            Issue.record("took a vision tower from K2-Thinking")
        } catch let error as GGUFUnpackError {
            guard case .visionSource(folder, _) = error else { Issue.record("\(error)"); return }
            #expect(error.description.contains("k2-thinking-tiny (--vision-from): config.json is Kimi K2 / K2-Thinking (model_type kimi_k2), which has no vision tower; expected a Kimi K2.5 folder"), "\(error)")
        }
        do {
            _ = try GGUFUnpacker.unpack(input: input, output: dir.path + "/b", options: GGUFUnpacker.Options(layout: .k2, visionFrom: TestPaths.fixture("k25-tiny")))
            Issue.record("wrote k2 with a vision tower")
        } catch let error as GGUFUnpackError {
            #expect(error.description.contains("it does not apply to the k2 layout"), "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == [])
    }

    /// A write failure part way (a full disk), injected before the second shard: nothing is left, and a folder
    /// that existed (empty) before is empty again.
    @Test("a write failure part way leaves nothing behind", arguments: [false, true])
    func writeFailure(folderExisted: Bool) throws {
        struct DiskFull: Error {}
        let dir = TemporaryDirectory()
        let out = dir.path + "/out"
        if folderExisted { try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false) }
        var options = GGUFUnpacker.Options(repackExperts: true)
        options.shardBytes = 64 << 10
        GGUFUnpackHook.lock.lock()
        GGUFUnpacker.beforeShard = { folder, i in if folder == out, i == 1 { throw DiskFull() } }
        defer {
            GGUFUnpacker.beforeShard = nil
            GGUFUnpackHook.lock.unlock()
        }
        #expect(throws: DiskFull.self) { _ = try GGUFUnpacker.unpack(input: Self.lossless, output: out, options: options) }
        if folderExisted {
            #expect(try FileManager.default.contentsOfDirectory(atPath: out) == [])
        } else {
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    @Test("a read-only output folder: the error names it and nothing is left")
    func readOnlyFolder() throws {
        guard geteuid() != 0 else { return }  // root writes anywhere
        let dir = TemporaryDirectory()
        let out = dir.path + "/ro"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: false)
        chmod(out, 0o555)
        defer { chmod(out, 0o755) }
        do {
            _ = try GGUFUnpacker.unpack(input: Self.lossless, output: out)
            Issue.record("wrote into a read-only folder")
        } catch {
            #expect("\(error)".contains("model-00001-of-00001.safetensors"), "\(error)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: out) == [])
    }
}

/// Serializes the tests that set the process-wide write hook.
enum GGUFUnpackHook {
    static let lock = NSLock()
}
