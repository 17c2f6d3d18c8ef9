import Foundation
@testable import GGUF
import Testing
import TestSupport

/// A deepseek2 GGUF header with K2.5's keys (one tiny tensor), optionally without or with changed keys.
func deepseek2File(drop: Set<String> = [], extra: (inout GGUFBuilder) -> Void = { _ in }) -> [UInt8] {
    var b = GGUFBuilder()
    b.add("general.architecture", string: "deepseek2")
    let ints: [(String, UInt32)] = [
        ("block_count", 61), ("context_length", 262_144), ("embedding_length", 7168), ("feed_forward_length", 18432),
        ("attention.head_count", 64), ("attention.head_count_kv", 1), ("expert_count", 384), ("expert_used_count", 8),
        ("expert_group_count", 1), ("expert_group_used_count", 1), ("expert_gating_func", 2), ("leading_dense_block_count", 1),
        ("vocab_size", 163_840), ("attention.q_lora_rank", 1536), ("attention.kv_lora_rank", 512), ("attention.key_length", 576),
        ("attention.value_length", 512), ("attention.key_length_mla", 192), ("attention.value_length_mla", 128),
        ("expert_feed_forward_length", 2048), ("expert_shared_count", 1), ("rope.dimension_count", 64),
        ("rope.scaling.original_context_length", 4096),
    ]
    for (k, v) in ints where !drop.contains(k) { b.add("deepseek2.\(k)", u32: v) }
    let floats: [(String, Float)] = [
        ("rope.freq_base", 50000), ("attention.layer_norm_rms_epsilon", 1e-5), ("expert_weights_scale", 2.827),
        ("rope.scaling.factor", 64), ("rope.scaling.yarn_log_multiplier", 0.1),
    ]
    for (k, v) in floats where !drop.contains(k) { b.add("deepseek2.\(k)", type: 6, GGUFBuilder.le(v.bitPattern)) }
    if !drop.contains("expert_weights_norm") { b.add("deepseek2.expert_weights_norm", type: 7, [1]) }
    if !drop.contains("rope.scaling.type") { b.add("deepseek2.rope.scaling.type", string: "yarn") }
    extra(&b)
    b.addF32("output_norm.weight", count: 4)
    return b.bytes()
}

func openModel(_ bytes: [UInt8]) throws(GGUFError) -> GGUFModel {
    let dir = TemporaryDirectory()
    let path = dir.write("k.gguf", bytes)
    return try withExtendedLifetime(dir) { () throws(GGUFError) -> GGUFModel in try GGUFModel(path: path) }
}

@Suite("deepseek2 metadata as a typed config")
struct GGUFDeepseek2ConfigTests {
    @Test("K2.5's keys map to the config; nothing to note")
    func k25() throws {
        let c = try GGUFDeepseek2Config(openModel(deepseek2File()))
        #expect(c.blockCount == 61 && c.headCount == 64 && c.headCountKV == 1 && c.expertCount == 384 && c.expertUsedCount == 8)
        #expect(c.qLoraRank == 1536 && c.kvLoraRank == 512 && c.keyLengthMLA == 192 && c.valueLengthMLA == 128)
        #expect(c.qkNopeHeadDim == 128 && c.ropeDimensionCount == 64)
        #expect(c.expertGatingFunc == 2 && c.expertWeightsNorm && c.expertWeightsScale == Double(Float(2.827)))
        #expect(c.ropeScalingType == "yarn" && c.ropeScalingFactor == 64 && c.ropeOriginalContextLength == 4096)
        #expect(abs((c.mscaleAllDim ?? 0) - 1) < 1e-6)
        #expect(c.rmsNormEpsilon == Double(Float(1e-5)) && c.ropeFreqBase == 50000)
        #expect(c.notes.isEmpty, "\(c.notes)")
    }

    @Test("K2-Thinking's YaRN betas are noted: llama.cpp ignores them")
    func yarnBetas() throws {
        let c = try GGUFDeepseek2Config(openModel(deepseek2File { b in
            b.add("deepseek2.rope.scaling.yarn_beta_fast", type: 6, GGUFBuilder.le(Float(1).bitPattern))
        }))
        #expect(c.yarnBetaFast == 1)
        #expect(c.notes.contains { $0.contains("beta_fast 1.0") && $0.contains("ignores them") }, "\(c.notes)")
    }

    @Test("the legacy layout, a missing gating function and MHA-style head_count_kv are noted")
    func notes() throws {
        let c = try GGUFDeepseek2Config(openModel(deepseek2File(drop: ["attention.key_length_mla", "expert_gating_func", "attention.head_count_kv"])))
        #expect(c.keyLengthMLA == nil && c.headCountKV == 64)
        #expect(c.notes.count == 3, "\(c.notes)")
        #expect(c.notes[0].contains("legacy") && c.notes[1].contains("head_count_kv is 64") && c.notes[2].contains("assumes softmax"))
    }

    @Test("a missing key, a wrong type and another architecture are refused by name")
    func refusals() throws {
        #expect(throws: GGUFError.self) { _ = try GGUFDeepseek2Config(openModel(deepseek2File(drop: ["attention.kv_lora_rank"]))) }
        do {
            _ = try GGUFDeepseek2Config(openModel(deepseek2File(drop: ["attention.kv_lora_rank"])))
        } catch {
            guard case let .configKeyMissing(file, key) = error else { Issue.record("\(error)"); return }
            #expect(key == "deepseek2.attention.kv_lora_rank" && file.hasSuffix("k.gguf"))
            #expect(error.description.contains("metadata key 'deepseek2.attention.kv_lora_rank' is missing"))
        }
        do {
            _ = try GGUFDeepseek2Config(openModel(deepseek2File(drop: ["block_count"]) { b in b.add("deepseek2.block_count", string: "61") }))
            Issue.record("a string block_count was accepted")
        } catch {
            #expect(error.description.contains("key 'deepseek2.block_count' is string \"61\", expected a non-negative integer"), "\(error)")
        }
        var b = GGUFBuilder.valid()
        b.kvs[0] = (Array("general.architecture".utf8), GGUFBuilder.le(UInt32(8)) + GGUFBuilder.str("llama"))
        do {
            _ = try GGUFDeepseek2Config(openModel(b.bytes()))
            Issue.record("llama accepted")
        } catch {
            #expect(error == .wrongKeyType(file: error.file ?? "", key: "general.architecture", found: "\"llama\"", expected: "\"deepseek2\""))
        }
    }
}

@Suite("GGUF inspect report")
struct GGUFInspectReportTests {
    @Test("counts, bytes and bits per weight by type and kind")
    func metadataFixture() throws {
        let r = try GGUFInspectReport(path: TestPaths.fixture("gguf/metadata.gguf"))
        #expect(r.tensorCount == 4 && r.architecture == "deepseek2" && r.name == "metadata fixture" && r.version == 3)
        #expect(r.elements == 15 + 7 + 384 + 128)
        #expect(r.byType.map(\.name) == ["F32", "Q8_0", "F16"])
        #expect(r.byType[1] == .init(name: "Q8_0", tensors: 1, elements: 128, bytes: 136, bitsPerWeight: 8.5))
        #expect(Set(r.byKind.map(\.name)) == ["token_embd", "attn_norm", "ffn_down_exps", "attn_q_a"])
        #expect(r.metadataCount == 21)
        let text = r.renderText()
        #expect(text.contains("tensors: 4, 534 weights"))
        #expect(text.contains("test.array.nested (array of array of i32) = [2 × array of i32]"), "\(text)")
    }

    @Test("a split set is reported whole from any part")
    func split() throws {
        let r = try GGUFInspectReport(path: TestPaths.fixture("gguf/split-00002-of-00003.gguf"))
        #expect(r.files.count == 3 && r.tensorCount == 5 && r.name == "split fixture")
        #expect(r.renderText().hasPrefix("GGUF "))
    }

    @Test("a deepseek2 file: the config line and its notes; a config that cannot be read is a note, not a failure")
    func deepseek2Notes() throws {
        let dir = TemporaryDirectory()
        let good = dir.write("k25.gguf", deepseek2File { b in
            b.add("deepseek2.rope.scaling.yarn_beta_fast", type: 6, GGUFBuilder.le(Float(1).bitPattern))
        })
        let r = try GGUFInspectReport(path: good)
        #expect(r.deepseek2 == "61 layers (1 dense), hidden 7168, 64 heads, q_lora 1536, kv_lora 512, 384 experts (8 used, 1 shared, width 2048)")
        #expect(r.notes.count == 1 && r.notes[0].contains("ignores them"), "\(r.notes)")
        let text = r.renderText()
        #expect(text.contains("deepseek2: 61 layers") && text.contains("note: YaRN beta_fast 1.0"), "\(text)")
        let bad = dir.write("bad.gguf", deepseek2File(drop: ["expert_count"]))
        let b = try GGUFInspectReport(path: bad)
        #expect(b.deepseek2 == nil && b.notes == [GGUFError.configKeyMissing(file: bad, key: "deepseek2.expert_count").description])
        #expect(try GGUFInspectReport(path: TestPaths.fixture("gguf/metadata.gguf")).notes.first?.contains("is missing") == true)
    }

    @Test("sums saturate instead of wrapping")
    func saturating() {
        let huge = GGUFTensorInfo(name: "h", type: .f32, ne: [Int.max / 4], offset: 0, elementCount: Int.max / 4, byteCount: Int.max - 3)
        let groups = GGUFInspectReport.group([huge, huge]) { $0.type.name }
        #expect(groups == [.init(name: "F32", tensors: 2, elements: Int.max / 2 - 1, bytes: Int.max, bitsPerWeight: GGUFInspectReport.bits(Int.max, Int.max / 2 - 1))])
    }

    @Test("tensor kinds")
    func kinds() {
        func kind(_ name: String) -> String {
            GGUFInspectReport.kind(GGUFTensorInfo(name: name, type: .f32, ne: [1], offset: 0, elementCount: 1, byteCount: 4))
        }
        #expect(kind("blk.12.ffn_gate_exps.weight") == "ffn_gate_exps")
        #expect(kind("token_embd.weight") == "token_embd")
        #expect(kind("blk.3.exp_probs_b.bias") == "exp_probs_b.bias")
        #expect(kind("weight") == "weight")
    }
}
