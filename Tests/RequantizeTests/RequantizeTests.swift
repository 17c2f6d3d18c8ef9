import Checkpoint
import Forward
import Foundation
import ModelStore
import Parity
import Requantize
import TestSupport
import TensorCore
import Testing

/// Tensor name → (dtype, shape, bytes) of every tensor in a folder.
func tensors(_ folder: String) throws -> [String: (dtype: String, shape: [Int], bytes: [UInt8])] {
    let dir = try CheckpointDirectory(path: folder)
    var out: [String: (String, [Int], [UInt8])] = [:]
    for (s, shard) in dir.shards.enumerated() {
        let shard = try #require(shard, "shard \(dir.shardNames[s]) unreadable")
        for e in shard.tensors { out[e.name] = (e.dtype.rawValue, e.shape, Array(try shard.bytes(of: e))) }
    }
    return out
}

func parity(_ model: String, _ group: String, fixture: String) throws -> ParityReport {
    let opened = try ModelStore.open(model)
    let weights = try opened.weights(dequant: group == "/bf16" ? .bf16 : .exact)
    let dump = try ReferenceDump(spec: TestPaths.fixtures.appendingPathComponent("references/\(fixture).h5").path + ":" + group)
    return try ParityRun.run(model: model, forward: ForwardPass(weights: weights, threads: 2), reference: dump)
}

@Suite("quantize and dequantize")
struct RequantizeTests {
    @Test("quantize(BF16 source of k2-thinking-tiny) reproduces compressed-tensors' codes and scales bit for bit")
    func quantize() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/q"
        let report = try Quantizer.quantize(input: TestPaths.fixture("quantize/k2-thinking-bf16"), output: out)
        #expect(report.quantizedModules == 48 && report.notes.isEmpty)
        let ours = try tensors(out), theirs = try tensors(TestPaths.fixture("k2-thinking-tiny"))
        #expect(Set(ours.keys) == Set(theirs.keys))
        for (name, t) in theirs {
            let o = try #require(ours[name], "\(name) missing")
            if name.hasSuffix(".weight_shape") {
                // compressed-tensors writes I64; the real Kimi files (and k2pack) I32.
                #expect(o.dtype == "I32" && o.shape == [2], "\(name)")
                continue
            }
            let diff = zip(o.bytes, t.bytes).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            #expect(o.dtype == t.dtype && o.shape == t.shape && o.bytes == t.bytes, "\(name): first differing byte \(diff.map(String.init) ?? "none"), sizes \(o.bytes.count)/\(t.bytes.count)")
        }
        // The scheme sits in the config, the output verifies, and the forward pass matches transformers' on it.
        let config = try String(contentsOfFile: out + "/config.json", encoding: .utf8)
        #expect(config.contains("\"quantization_config\"") && config.contains("\"pack-quantized\""))
        let report2 = try parity(out, "/exact", fixture: "k2-thinking-tiny")
        #expect(report2.pass, "parity of the quantized output failed at layer \(report2.firstFailingLayer ?? -1)")
    }

    @Test("dequantize writes compressed-tensors' own decompression, and no quantization_config anywhere")
    func dequantize() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/d"
        let report = try Dequantizer.dequantize(input: TestPaths.fixture("k2-thinking-tiny"), output: out)
        #expect(report.dequantizedModules == 48 && report.dtype == "BF16")
        let ours = try tensors(out)
        let library = try SafetensorsFile(path: TestPaths.fixture("quantize/k2-thinking-tiny.dequantized.safetensors"), name: "dequantized")
        for e in library.tensors {
            let o = try #require(ours[e.name], "\(e.name) missing")
            #expect(o.bytes == Array(try library.bytes(of: e)), "\(e.name) differs from compressed-tensors' decompression")
        }
        #expect(!ours.keys.contains { $0.hasSuffix(".weight_packed") || $0.hasSuffix(".weight_scale") })
        #expect(!(try String(contentsOfFile: out + "/config.json", encoding: .utf8)).contains("quantization_config"))
        let p = try parity(out, "/bf16", fixture: "k2-thinking-tiny")
        #expect(p.pass, "parity of the dequantized output failed at layer \(p.firstFailingLayer ?? -1)")
        // K2.5: the nested text_config's quantization_config goes too, and quantizing puts it back there.
        _ = try Dequantizer.dequantize(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/d25")
        #expect(!(try String(contentsOfFile: dir.path + "/d25/config.json", encoding: .utf8)).contains("quantization_config"))
        let again = try Quantizer.quantize(input: dir.path + "/d25", output: dir.path + "/q25")
        #expect(again.quantizedModules == 48)
        let config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/q25/config.json"))) as? [String: Any])
        #expect(config["quantization_config"] == nil)
        #expect((config["text_config"] as? [String: Any])?["quantization_config"] != nil, "K2.5 keeps its scheme inside text_config")
    }

    @Test("quantize and dequantize carry every non-tensor file, sub-folders included, in both output formats")
    func carriedFiles() throws {
        let dir = TemporaryDirectory()
        let fixture = try folderContents(TestPaths.fixture("k25-tiny"))
        let carried = fixture.filter { !$0.key.hasSuffix(".safetensors") && $0.key != "config.json" && $0.key != "model.safetensors.index.json" }
        #expect(carried.count == 18 && carried.keys.contains("docs/deploy_guidance.md") && carried.keys.contains(".gitattributes"))
        _ = try Dequantizer.dequantize(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/d25")
        _ = try Quantizer.quantize(input: dir.path + "/d25", output: dir.path + "/q25")
        for folder in ["d25", "q25"] {
            let out = try folderContents(dir.path + "/" + folder)
            for (path, bytes) in carried { #expect(out[path] == bytes, "\(folder): \(path)") }
        }
        _ = try Dequantizer.dequantize(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/p25", options: .init(format: .k2pack))
        let packed = try folderContents(dir.path + "/p25")
        for (path, bytes) in carried { #expect(packed[path] == bytes, "k2pack form: \(path)") }
        let record = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.path + "/p25/k2pack.json"))) as? [String: Any])
        #expect((record["carried"] as? [[String: Any]])?.compactMap { $0["path"] as? String }.sorted() == carried.keys.sorted())
    }

    @Test("--exact writes float32 q·scale, which rounds to the BF16 output")
    func exact() throws {
        let dir = TemporaryDirectory()
        _ = try Dequantizer.dequantize(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/x", options: .init(exact: true))
        let ours = try tensors(dir.path + "/x")
        let library = try SafetensorsFile(path: TestPaths.fixture("quantize/k2-thinking-tiny.dequantized.safetensors"), name: "dequantized")
        for e in library.tensors {
            let o = try #require(ours[e.name])
            #expect(o.dtype == "F32")
            let floats = o.bytes.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let rounded = floats.flatMap { v -> [UInt8] in let b = BFloat16Bits.fromFloat(v); return [UInt8(b & 0xFF), UInt8(b >> 8)] }
            #expect(rounded == Array(try library.bytes(of: e)), "\(e.name)")
        }
        let p = try parity(dir.path + "/x", "/exact", fixture: "k2-thinking-tiny")
        #expect(p.pass)
    }

    @Test("verify --requantize: the true source is identical; the dequantized copy lands where compressed-tensors says")
    func requantize() throws {
        let same = try RequantizeCheck.run(int4: TestPaths.fixture("k2-thinking-tiny"), bf16: TestPaths.fixture("quantize/k2-thinking-bf16"))
        #expect(same.codesDiffering == 0 && same.scalesDiffering == 0 && same.identicalModules == 48)
        let dir = TemporaryDirectory()
        _ = try Dequantizer.dequantize(input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/d")
        let report = try RequantizeCheck.run(int4: TestPaths.fixture("k2-thinking-tiny"), bf16: dir.path + "/d")
        struct Pinned: Decodable { var codes: Int; var codes_differing: Int; var largest_code_step: Int; var scales: Int; var scales_differing: Int }
        let pinned = try JSONDecoder().decode([String: Pinned].self, from: Data(contentsOf: TestPaths.fixtures.appendingPathComponent("quantize/k2-thinking-tiny.requantize.json")))
        #expect(report.modules.count == pinned.count)
        for m in report.modules {
            let p = try #require(pinned[m.module])
            #expect(m.codesDiffering == p.codes_differing && m.scalesDiffering == p.scales_differing && m.largestCodeStep == p.largest_code_step && m.codes == p.codes,
                    "\(m.module): ours \(m.codesDiffering) codes / \(m.scalesDiffering) scales, compressed-tensors \(p.codes_differing) / \(p.scales_differing)")
        }
        #expect(report.codesDiffering == pinned.values.reduce(0) { $0 + $1.codes_differing })
        #expect(report.scalesDiffering == pinned.values.reduce(0) { $0 + $1.scales_differing })
    }

    @Test("a config that still claims INT4 over plain BF16 tensors is reported and treated as BF16")
    func staleConfig() throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "quantize/k2-thinking-bf16")
        let stale = try String(contentsOfFile: TestPaths.fixture("k2-thinking-tiny/config.json"), encoding: .utf8)
        try stale.write(toFile: input + "/config.json", atomically: true, encoding: .utf8)
        let report = try Quantizer.quantize(input: input, output: dir.path + "/q")
        #expect(report.notes.first?.contains("treated as BF16") == true)
        #expect(report.quantizedModules == 48)
        let clean = try Quantizer.quantize(input: TestPaths.fixture("quantize/k2-thinking-bf16"), output: dir.path + "/q2")
        #expect(try tensors(dir.path + "/q").mapValues(\.bytes) == tensors(dir.path + "/q2").mapValues(\.bytes))
        _ = clean
    }

    @Test("--scheme applies a given quantization_config (DeepSeek-V3 has no native INT4); --format k2pack writes our format")
    func schemeAndFormat() throws {
        let dir = TemporaryDirectory()
        let scheme = try String(contentsOfFile: TestPaths.packageRoot.appendingPathComponent("Manifests/json/kimi_int4_scheme.json").path, encoding: .utf8)
        let file = dir.write("scheme.json", Array(scheme.utf8))
        #expect(throws: RequantizeError.self) { _ = try Quantizer.quantize(input: TestPaths.fixture("deepseek-v3-tiny"), output: dir.path + "/n") }
        let report = try Quantizer.quantize(input: TestPaths.fixture("deepseek-v3-tiny"), output: dir.path + "/ds", options: .init(format: .k2pack, schemeFile: file))
        #expect(report.quantizedModules == 2 * 8 * 3)
        #expect(FileManager.default.fileExists(atPath: dir.path + "/ds/k2pack.json"))
        #expect(!FileManager.default.fileExists(atPath: dir.path + "/ds.hf-staging"))
    }

    @Test("refusals: already INT4, NaN in a weight (named with row and column, nothing left behind, hf and k2pack), bad scheme")
    func refusals() throws {
        let dir = TemporaryDirectory()
        #expect(throws: RequantizeError.alreadyQuantized(folder: TestPaths.fixture("k25-tiny"), scheme: "compressed-tensors pack-quantized INT4 group 32 symmetric")) {
            _ = try Quantizer.quantize(input: TestPaths.fixture("k25-tiny"), output: dir.path + "/a")
        }
        // A NaN in one expert weight.
        let input = dir.copy(fixture: "quantize/k2-thinking-bf16")
        let directory = try CheckpointDirectory(path: input)
        let name = "model.layers.2.mlp.experts.3.up_proj.weight"
        let (shard, entry) = try #require(directory.entry(named: name))
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: shard.file.path))
        try handle.seek(toOffset: UInt64(entry.rangeInFile.lowerBound + 2 * (5 * 64 + 17)))
        try handle.write(contentsOf: [0xC0, 0x7F])
        try handle.close()
        let out = dir.path + "/nan"
        #expect(throws: RequantizeError.tensor(
            file: shard.name, tensor: name,
            reason: "row 5, column 17: value at column 17 is nan (bf16 0x7FC0): NaN and infinity cannot be quantized")) {
            _ = try Quantizer.quantize(input: input, output: out)
        }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: out)) ?? []
        #expect(left.isEmpty, "left behind: \(left)")
        // Streamed into a k2pack folder: the same error, and the files written before it are removed.
        let packed = dir.path + "/nan-k2pack"
        #expect(throws: RequantizeError.tensor(
            file: shard.name, tensor: name,
            reason: "row 5, column 17: value at column 17 is nan (bf16 0x7FC0): NaN and infinity cannot be quantized")) {
            _ = try Quantizer.quantize(input: input, output: packed, options: .init(format: .k2pack))
        }
        let leftPacked = (try? FileManager.default.contentsOfDirectory(atPath: packed)) ?? []
        #expect(leftPacked.isEmpty, "left behind: \(leftPacked)")
        let bad = dir.write("bad.json", Array(#"{"config_groups": {"g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "int", "symmetric": true, "strategy": "group", "group_size": 32}}}, "format": "pack-quantized", "quant_method": "compressed-tensors", "ignore": []}"#.utf8))
        do {
            _ = try Quantizer.quantize(input: TestPaths.fixture("quantize/k2-thinking-bf16"), output: dir.path + "/b", options: .init(schemeFile: bad))
            Issue.record("an 8-bit scheme was accepted")
        } catch {
            #expect("\(error)".contains("num_bits is 8; k2pack implements 4"), "\(error)")
        }
    }
}
