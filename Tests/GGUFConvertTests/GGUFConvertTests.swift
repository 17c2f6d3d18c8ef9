import Checkpoint
import FileIO
import Foundation
import GGUF
import Testing
import TestSupport

@testable import GGUFConvert

/// The tensor count llama.cpp's deepseek2 loader creates: 3 outside the layers, 13 per dense layer, 18 per MoE layer.
func loaderTensorCount(layers: Int, dense: Int) -> Int { 3 + 13 * dense + 18 * (layers - dense) }

/// The last progress report seen (the callback may run on any thread).
final class ProgressRecord: @unchecked Sendable {
    private let lock = NSLock()
    private var last = (0, 0)
    func set(_ done: Int, _ total: Int) { lock.withLock { last = (done, total) } }
    func get() -> (Int, Int) { lock.withLock { last } }
}

/// A converted fixture in a temporary folder.
struct Converted {
    let dir: TemporaryDirectory
    let path: String
    let report: GGUFConverter.Report
    let file: GGUFFile

    init(_ fixture: String, options: GGUFConverter.Options = GGUFConverter.Options(requireTokenizer: false), name: String = "out.gguf") throws {
        dir = TemporaryDirectory()
        path = dir.path + "/" + name
        report = try GGUFConverter.convert(input: TestPaths.fixture(fixture), output: path, options: options)
        file = try GGUFFile(path: path)
    }
}

/// A checkpoint tensor's bytes.
func sourceBytes(_ folder: String, _ name: String) throws -> [UInt8] {
    let dir = try CheckpointDirectory(path: folder)
    let (shard, entry) = try #require(dir.entry(named: name))
    return Array(try shard.bytes(of: entry))
}

func bf16(_ bytes: [UInt8], _ i: Int) -> Float { Float(bitPattern: UInt32(UInt16(bytes[2 * i]) | UInt16(bytes[2 * i + 1]) << 8) << 16) }

/// The exact `q·s` of an INT4 module ([out, in], row-major), from its packed codes and BF16 scales.
func exactValues(_ folder: String, module: String, out: Int, in columns: Int) throws -> [Float] {
    let packed = try sourceBytes(folder, module + ".weight_packed"), scales = try sourceBytes(folder, module + ".weight_scale")
    var values: [Float] = []
    values.reserveCapacity(out * columns)
    for r in 0..<out {
        for k in 0..<columns {
            let byte = packed[r * columns / 2 + k / 2]
            let nibble = k % 2 == 0 ? byte & 0xF : byte >> 4
            values.append(Float(Int(nibble) - 8) * bf16(scales, r * columns / 32 + k / 32))
        }
    }
    return values
}

/// Every routed-expert stack of `file`, dequantized by the GGUF reader, equals the source's exact `q·s`, element for
/// element (so every nibble and every scale moved unchanged).
func checkExperts(_ file: GGUFFile, source: String, prefix: String, layers: [Int], experts: Int, hidden: Int, moe: Int) throws {
    let projections = [("gate", moe, hidden), ("up", moe, hidden), ("down", hidden, moe)]
    for layer in layers {
        for (proj, out, columns) in projections {
            let info = try #require(file.tensor(named: "blk.\(layer).ffn_\(proj)_exps.weight"))
            #expect(info.type == .q4_0 && info.ne == [columns, out, experts])
            let values = try GGUFDequantizer.dequantize(info, of: file)
            for e in 0..<experts {
                let exact = try exactValues(source, module: "\(prefix)model.layers.\(layer).mlp.experts.\(e).\(proj)_proj", out: out, in: columns)
                let slab = Array(values[(e * out * columns)..<((e + 1) * out * columns)])
                #expect(slab == exact, "layer \(layer) \(proj) expert \(e)")
            }
        }
    }
}

@Suite("convert --to gguf")
struct GGUFConvertTests {
    @Test("k2-thinking-tiny: the loader's tensor count, every expert's (n−8)·d equal to the source's exact q·s")
    func k2Thinking() throws {
        let c = try Converted("k2-thinking-tiny")
        #expect(c.file.tensors.count == loaderTensorCount(layers: 3, dense: 1))
        #expect(c.report.tensors == 52 && c.report.q4_0Tensors == 6 && c.report.filesReused.isEmpty && c.report.inexactScales == 0)
        #expect(c.file.architecture == "deepseek2" && c.file.alignment == 32)
        try checkExperts(c.file, source: TestPaths.fixture("k2-thinking-tiny"), prefix: "", layers: [1, 2], experts: 8, hidden: 64, moe: 32)
        // Norms, 1-D tensors and the router F32; the rest BF16.
        #expect(c.file.tensor(named: "blk.1.ffn_gate_inp.weight")?.type == .f32)
        #expect(c.file.tensor(named: "blk.1.exp_probs_b.bias")?.type == .f32)
        #expect(c.file.tensor(named: "blk.0.attn_kv_a_norm.weight")?.type == .f32)
        #expect(c.file.tensor(named: "token_embd.weight")?.type == .bf16)
        #expect(c.file.tensor(named: "blk.0.attn_kv_b.weight") == nil)
    }

    @Test("k2-thinking-tiny matches the committed gguf-py file tensor for tensor (names, types, ne, bytes); metadata differs only by general.alignment")
    func matchesCommittedFixture() throws {
        let c = try Converted("k2-thinking-tiny")
        let reference = try GGUFFile(path: TestPaths.fixture("gguf-models/k2-thinking-tiny.BF16-Q4_0.gguf"))
        #expect(Set(c.file.tensors.map(\.name)) == Set(reference.tensors.map(\.name)))
        for t in reference.tensors {
            let ours = try #require(c.file.tensor(named: t.name))
            #expect(ours.type == t.type && ours.ne == t.ne, "\(t.name)")
            #expect(Array(try c.file.bytes(of: ours)) == Array(try reference.bytes(of: t)), "\(t.name)")
        }
        let ourKeys = Set(c.file.metadata.map(\.key)), theirKeys = Set(reference.metadata.map(\.key))
        #expect(ourKeys.subtracting(theirKeys) == ["general.alignment"])
        #expect(theirKeys.subtracting(ourKeys).isEmpty)
        for kv in reference.metadata { #expect(c.file[kv.key] == kv.value, "\(kv.key)") }
    }

    @Test("k25-tiny (nested text_config, language_model. names, a vision tower): text tensors only, keys from text_config")
    func k25() throws {
        // Without the tokenizer here (requireTokenizer false): no tokenizer keys; `fixtureTokenizer` writes it.
        let c = try Converted("k25-tiny", options: GGUFConverter.Options(requireTokenizer: false))
        #expect(c.file.tensors.count == loaderTensorCount(layers: 3, dense: 1))
        #expect(!c.file.tensors.contains { $0.name.hasPrefix("v.") || $0.name.contains("vision") || $0.name.contains("mm_") })
        try checkExperts(c.file, source: TestPaths.fixture("k25-tiny"), prefix: "language_model.", layers: [1, 2], experts: 8, hidden: 64, moe: 32)
        #expect(c.file["deepseek2.block_count"] == .u32(3))
        #expect(c.file["deepseek2.attention.head_count_kv"] == .u32(1))
        #expect(c.file["deepseek2.expert_gating_func"] == .u32(2))
        #expect(c.file["general.file_type"] == .u32(32))
        #expect(!c.file.metadata.contains { $0.key.hasPrefix("tokenizer.") })
    }

    @Test("--outtype q8_0: every non-expert tensor bit-exact with gguf-py's quantize(…, Q8_0) (the committed k25-tiny.Q8_0), attn_k_b falling back to F16")
    func q8_0MatchesGGUFPy() throws {
        let c = try Converted("k25-tiny", options: GGUFConverter.Options(outType: .q8_0, requireTokenizer: false))
        let reference = try GGUFFile(path: TestPaths.fixture("gguf-models/k25-tiny.Q8_0.gguf"))
        var compared = 0
        for t in reference.tensors where !t.name.hasSuffix("_exps.weight") {
            let ours = try #require(c.file.tensor(named: t.name))
            #expect(ours.type == t.type && ours.ne == t.ne, "\(t.name)")
            #expect(Array(try c.file.bytes(of: ours)) == Array(try reference.bytes(of: t)), "\(t.name)")
            compared += 1
        }
        #expect(compared == 46)
        #expect(c.file.tensor(named: "blk.0.attn_k_b.weight")?.type == .f16)
        #expect(c.file.tensor(named: "blk.0.attn_q_b.weight")?.type == .q8_0)
        #expect(c.file["general.file_type"] == .u32(7))
    }

    @Test("--outtype f16: matrices as numpy's float16 rounding of each value")
    func f16() throws {
        let c = try Converted("k2-thinking-tiny", options: GGUFConverter.Options(outType: .f16, requireTokenizer: false))
        let info = try #require(c.file.tensor(named: "blk.0.attn_q_b.weight"))
        #expect(info.type == .f16)
        let source = try sourceBytes(TestPaths.fixture("k2-thinking-tiny"), "model.layers.0.self_attn.q_b_proj.weight")
        let values = try GGUFDequantizer.dequantize(info, of: c.file)
        #expect(values == (0..<values.count).map { Float(Float16(bf16(source, $0))) })
        #expect(c.file["general.file_type"] == .u32(1))
    }

    @Test("kv_b_proj split per head: attn_k_b[h][c][d] = kv_b[h·(nope+v)+d][c], attn_v_b[h][d][c] = kv_b[h·(nope+v)+nope+d][c]")
    func kvBSplit() throws {
        let c = try Converted("k2-thinking-tiny")
        let (heads, nope, v, kvLora) = (2, 16, 16, 32)
        for layer in 0..<3 {
            let kv = try sourceBytes(TestPaths.fixture("k2-thinking-tiny"), "model.layers.\(layer).self_attn.kv_b_proj.weight")
            let kInfo = try #require(c.file.tensor(named: "blk.\(layer).attn_k_b.weight"))
            let vInfo = try #require(c.file.tensor(named: "blk.\(layer).attn_v_b.weight"))
            #expect(kInfo.ne == [nope, kvLora, heads] && vInfo.ne == [kvLora, v, heads])
            let k = try GGUFDequantizer.dequantize(kInfo, of: c.file), vb = try GGUFDequantizer.dequantize(vInfo, of: c.file)
            for h in 0..<heads {
                for cc in 0..<kvLora {
                    for d in 0..<nope { #expect(k[(h * kvLora + cc) * nope + d] == bf16(kv, (h * (nope + v) + d) * kvLora + cc)) }
                    for d in 0..<v { #expect(vb[(h * v + d) * kvLora + cc] == bf16(kv, (h * (nope + v) + nope + d) * kvLora + cc)) }
                }
            }
        }
    }

    @Test("the metadata: llama.cpp's keys and types, YaRN keys with log multiplier 0.1·mscale_all_dim, and the beta_fast warning")
    func metadata() throws {
        let c = try Converted("k2-thinking-tiny")
        let vocab = try FixtureRecord.vocabularySize("k2-thinking-tiny")
        let expected: [String: GGUFValue] = [
            "general.architecture": .string("deepseek2"), "general.type": .string("model"), "general.name": .string("k2-thinking-tiny"),
            "general.alignment": .u32(32), "general.quantization_version": .u32(2), "general.file_type": .u32(32),
            "deepseek2.block_count": .u32(3), "deepseek2.context_length": .u32(4096), "deepseek2.embedding_length": .u32(64),
            "deepseek2.feed_forward_length": .u32(96), "deepseek2.attention.head_count": .u32(2), "deepseek2.attention.head_count_kv": .u32(1),
            "deepseek2.rope.freq_base": .f32(50000), "deepseek2.attention.layer_norm_rms_epsilon": .f32(1e-5), "deepseek2.expert_count": .u32(8),
            "deepseek2.expert_used_count": .u32(2), "deepseek2.expert_group_count": .u32(1), "deepseek2.expert_group_used_count": .u32(1),
            "deepseek2.expert_gating_func": .u32(2), "deepseek2.leading_dense_block_count": .u32(1), "deepseek2.vocab_size": .u32(UInt32(vocab)),
            "deepseek2.attention.q_lora_rank": .u32(32), "deepseek2.attention.kv_lora_rank": .u32(32), "deepseek2.attention.key_length": .u32(40),
            "deepseek2.attention.value_length": .u32(32), "deepseek2.attention.key_length_mla": .u32(24), "deepseek2.attention.value_length_mla": .u32(16),
            "deepseek2.expert_feed_forward_length": .u32(32), "deepseek2.expert_shared_count": .u32(1), "deepseek2.expert_weights_scale": .f32(2.827),
            "deepseek2.expert_weights_norm": .bool(true), "deepseek2.rope.dimension_count": .u32(8), "deepseek2.rope.scaling.type": .string("yarn"),
            "deepseek2.rope.scaling.factor": .f32(16), "deepseek2.rope.scaling.original_context_length": .u32(256),
            "deepseek2.rope.scaling.yarn_beta_fast": .f32(1), "deepseek2.rope.scaling.yarn_beta_slow": .f32(1),
            "deepseek2.rope.scaling.yarn_log_multiplier": .f32(Float(0.1 * 1.0)),
        ]
        #expect(c.file.metadata.count == expected.count)
        for (key, value) in expected { #expect(c.file[key] == value, "\(key)") }
        #expect(c.report.warnings.count == 1)
        #expect(c.report.warnings.first?.contains("pass --yarn-beta-fast 1 to llama.cpp") == true)
        #expect(c.report.warnings.first?.contains("uses 32 / 1") == true)
    }

    @Test("extra metadata (the tokenizer's) is appended after the model's; a key given twice is refused")
    func extraMetadata() throws {
        let extra = [GGUFKeyValue(key: "tokenizer.ggml.model", value: .string("gpt2"))]
        let c = try Converted("k2-thinking-tiny", options: GGUFConverter.Options(extraMetadata: extra, requireTokenizer: false))
        #expect(c.file.metadata.last == extra[0])
        let dir = TemporaryDirectory()
        let duplicate = [GGUFKeyValue(key: "general.name", value: .string("x"))]
        #expect(throws: GGUFConvertError.duplicateKey(key: "general.name")) {
            _ = try GGUFConverter.convert(
                input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/o.gguf", options: GGUFConverter.Options(extraMetadata: duplicate, requireTokenizer: false))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    @Test("the tokenizer's keys come from the hook (given the folder and its config) after the model's; a failing hook is reported by folder")
    func tokenizerHook() throws {
        var options = GGUFConverter.Options(extraMetadata: [GGUFKeyValue(key: "x.extra", value: .bool(true))])
        options.tokenizerMetadata = { folder, config in
            [GGUFKeyValue(key: "tokenizer.ggml.model", value: .string("gpt2")), GGUFKeyValue(key: "t.vocab", value: .u32(UInt32(config.text.vocabSize)))]
        }
        let c = try Converted("k25-tiny", options: options)
        #expect(Array(c.file.metadata.suffix(3).map(\.key)) == ["tokenizer.ggml.model", "t.vocab", "x.extra"])
        #expect(c.file["t.vocab"] == .u32(UInt32(try FixtureRecord.vocabularySize("k25-tiny"))))

        struct Broken: Error, CustomStringConvertible { var description: String { "tiktoken.model: line 3 is not base64" } }
        options.tokenizerMetadata = { _, _ in throw Broken() }
        let dir = TemporaryDirectory()
        let input = TestPaths.fixture("k25-tiny")
        #expect(throws: GGUFConvertError.tokenizer(folder: input, reason: "tiktoken.model: line 3 is not base64")) {
            _ = try GGUFConverter.convert(input: input, output: dir.path + "/o.gguf", options: options)
        }
        #expect(GGUFConvertError.tokenizer(folder: "f", reason: "r").description == "f: cannot write the tokenizer into the GGUF: r")
        #expect(listing(dir.path).isEmpty)
    }

    /// The Kimi fixtures carry a real tokenizer that fills their vocabulary (512 ranks + 256 specials = 768): a
    /// plain convert writes it, every id a token, the specials CONTROL, and the config's ids.
    @Test("the Kimi fixtures' own tokenizer goes into the GGUF: one token per id, ranks then CONTROL specials, bos/eos/pad ids", arguments: ["k25-tiny", "k2-thinking-tiny"])
    func fixtureTokenizer(_ fixture: String) throws {
        let c = try Converted(fixture, options: GGUFConverter.Options())
        let vocab = try FixtureRecord.vocabularySize(fixture)
        let ranks = try String(contentsOfFile: TestPaths.fixture(fixture + "/tiktoken.model"), encoding: .utf8).split(separator: "\n").count
        #expect(c.file["tokenizer.ggml.pre"] == .string("kimi-k2"))
        guard case let .array(.string(tokens)) = c.file["tokenizer.ggml.tokens"], case let .array(.i32(types)) = c.file["tokenizer.ggml.token_type"] else {
            Issue.record("no token list or token types")
            return
        }
        #expect(tokens.count == vocab && types.count == vocab && ranks + 256 == vocab)
        #expect(types.prefix(ranks).allSatisfy { $0 == 1 } && types.suffix(vocab - ranks).allSatisfy { $0 == 3 })
        #expect(tokens[ranks] == "[BOS]" && tokens[ranks + 1] == "[EOS]" && tokens[vocab - 1] == "[PAD]")
        #expect(c.file["tokenizer.ggml.bos_token_id"] == .u32(UInt32(ranks)))
    }

    /// Without a hook the Kimi tokenizer's keys come from GGUFVocabulary: a larger tokenizer (the fixture tokenizer,
    /// 2,229 ranks + 256 specials) over k2-thinking-tiny's own, in a folder whose vocabulary is 768, is refused by
    /// that check, with nothing written.
    @Test("without a hook the folder's tokenizer goes through GGUFVocabulary (too large for the model's vocab_size: refused, nothing written)")
    func defaultTokenizer() throws {
        let dir = TemporaryDirectory()
        let input = dir.copy(fixture: "k2-thinking-tiny")
        let vocab = try FixtureRecord.vocabularySize("k2-thinking-tiny")
        for name in ["tiktoken.model", "tokenizer_config.json"] {
            try FileManager.default.removeItem(atPath: input + "/" + name)
            try FileManager.default.copyItem(atPath: TestPaths.fixture("tokenizer/" + name), toPath: input + "/" + name)
        }
        let output = dir.path + "/out"
        try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: false)
        do {
            _ = try GGUFConverter.convert(input: input, output: output + "/o.gguf", options: GGUFConverter.Options())
            Issue.record("converted a tokenizer of 2,485 ids into a vocabulary of \(vocab)")
        } catch {
            guard case .tokenizer(let folder, let reason) = error else { Issue.record("unexpected error \(error)"); return }
            #expect(folder == input)
            #expect(reason.contains("vocab") && reason.contains("\(vocab)"), "\(reason)")
        }
        #expect(listing(output).isEmpty)
    }

    @Test("the tensor table gives llama.cpp's counts for the full layouts: 1096 for K2 / K2.5 (61 layers, 1 dense), 1086 for DeepSeek-V3 (3 dense)")
    func fullLayoutCounts() throws {
        let table = try GGUFTensorTable.load()
        func count(layers: Int, dense: Int) -> Int {
            table.tensors.reduce(0) { sum, entry in
                switch entry.repeat {
                case "once": sum + 1
                case "layers": sum + layers
                case "dense_layers": sum + dense
                case "moe_layers": sum + layers - dense
                default: sum
                }
            }
        }
        #expect(count(layers: 61, dense: 1) == 1096)
        #expect(count(layers: 61, dense: 3) == 1086)
        #expect(count(layers: 3, dense: 1) == loaderTensorCount(layers: 3, dense: 1))
    }

    @Test("an output folder gets NAME.OUTTYPE-Q4_0.gguf; progress reaches the total")
    func folderOutput() throws {
        let dir = TemporaryDirectory()
        let seen = ProgressRecord()
        let report = try GGUFConverter.convert(
            input: TestPaths.fixture("k2-thinking-tiny"), output: dir.path + "/new", options: GGUFConverter.Options(requireTokenizer: false),
            progress: { done, total in seen.set(done, total) })
        #expect(report.files == [dir.path + "/new/k2-thinking-tiny.BF16-Q4_0.gguf"])
        let (done, total) = seen.get()
        let length = try ReadOnlyFile(path: report.files[0]).byteCount
        #expect(done == total && total == report.bytes && total == length)
    }
}
