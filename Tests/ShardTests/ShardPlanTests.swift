import Inspection
import LoadedModel
import ModelConfig
import Foundation
import Shard
import TestSupport
import Testing
import PackFormat

@Suite("shard plans from the manifest's rules")
struct ShardPlanTests {
    func plan(_ fixture: String, tp: Int, ep: Int) throws -> ShardPlan {
        try ShardPlan(LoadedCheckpoint(path: TestPaths.fixture(fixture)), layout: ShardLayout(tp: tp, ep: ep))
    }

    @Test("EP only: whole experts in contiguous blocks, everything else on every rank")
    func expertParallel() throws {
        let p = try plan("k25-tiny", tp: 1, ep: 2)
        #expect(p.ranks.map(\.experts) == [[0, 4], [4, 8]])
        let expertBytes = p.pieces[0].filter { $0.tensor.contains(".mlp.experts.") }.reduce(0) { $0 + $1.bytes }
        let shared = p.ranks[0].bytes - expertBytes
        #expect(p.ranks[0].bytes + p.ranks[1].bytes == 2 * shared + (p.checkpointBytes - shared), "every byte of the experts once, the rest on both")
        #expect(p.balance >= 1 && p.balance < 1.01, "balance \(p.balance)")
        #expect(p.pieces[1].contains { $0.tensor == "language_model.model.layers.2.mlp.experts.7.down_proj.weight_packed" })
        #expect(!p.pieces[0].contains { $0.tensor == "language_model.model.layers.2.mlp.experts.7.down_proj.weight_packed" })
    }

    @Test("TP × EP on BF16 experts: heads, vocabulary and MLPs split in equal blocks")
    func tensorParallel() throws {
        for (tp, ep) in [(2, 1), (2, 2), (1, 4)] {
            let p = try plan("deepseek-v3-tiny", tp: tp, ep: ep)
            #expect(p.ranks.count == tp * ep)
            let qb = try #require(p.pieces[1].first { $0.tensor == "model.layers.0.self_attn.q_b_proj.weight" })
            #expect(tp == 1 ? qb.range == nil : (qb.dimension == 0 && qb.range == [24, 48]), "\(tp)×\(ep): \(qb)")
            let o = try #require(p.pieces[0].first { $0.tensor == "model.layers.0.self_attn.o_proj.weight" })
            #expect(tp == 1 ? o.range == nil : (o.dimension == 1 && o.range == [0, 16]))
        }
    }

    @Test("impossible splits are refused, naming the tensor and the numbers")
    func refusals() throws {
        #expect(throws: ShardError.expertsIndivisible(experts: 8, ep: 3)) { _ = try plan("k25-tiny", tp: 1, ep: 3) }
        #expect(ShardError.expertsIndivisible(experts: 8, ep: 3).description == "cannot split the model: 8 routed experts do not divide into 3 expert-parallel groups")
        for (tp, ep) in [(0, 1), (1, 0), (64, 65)] {
            #expect(throws: ShardError.implausibleLayout(tp: tp, ep: ep)) { _ = try plan("k25-tiny", tp: tp, ep: ep) }
        }
        #expect(ShardError.implausibleLayout(tp: 64, ep: 65).description == "cannot split the model: tp 64 × ep 65 is not a plausible layout")
        #expect(throws: ShardError.noUsableConfig) {
            _ = try ShardPlan(LoadedCheckpoint(path: TestPaths.fixture("malformed/config_bad_json")), layout: ShardLayout(tp: 1, ep: 1))
        }
        #expect(ShardError.noUsableConfig.description == "the checkpoint has no usable config.json")
        do {
            _ = try plan("k25-tiny", tp: 4, ep: 1)
            Issue.record("tp 4 with 2 heads was accepted")
        } catch {
            #expect("\(error)".contains("not a multiple of tp 4"), "\(error)")
        }
        // INT4 experts split along their input: 32 inputs are one group of 32, which cannot be halved.
        do {
            _ = try plan("k25-tiny", tp: 2, ep: 1)
            Issue.record("halving a 32-wide INT4 group was accepted")
        } catch {
            #expect("\(error)".contains("down_proj.weight_") && "\(error)".contains("quantization groups"), "\(error)")
        }
    }
}

@Suite("FP8 block-scaled weights split in whole blocks")
struct FP8BlockSplitTests {
    func expected(block: Int) throws -> ExpectedTensorList {
        let path = TestPaths.fixture("deepseek-v3-tiny") + "/config.json"
        var text = try String(contentsOfFile: path, encoding: .utf8)
        let fp8 = #""quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [\#(block), \#(block)]},"#
        text = text.replacingOccurrences(of: "{", with: "{" + fp8, options: [], range: text.range(of: "{"))
        return try ExpectedTensorList(config: ModelConfig.parse(Array(text.utf8)))
    }

    func blocks(_ list: ExpectedTensorList, _ name: String) throws -> [[Int]]? {
        let t = try #require(list.byName[name].map { list.tensors[$0] }, "\(name) is not expected")
        return try ShardPlan.blocks(name: name, shape: t.shape, dtype: t.dtypes[0], expected: t, layout: ShardLayout(tp: 2, ep: 1))?
            .map { [$0.dimension, $0.range.lowerBound, $0.range.upperBound] }
    }

    @Test("a weight and its weight_scale_inv split at the same block boundaries; a split inside a block is refused")
    func blockAligned() throws {
        let list = try expected(block: 8)
        #expect(try blocks(list, "model.layers.0.self_attn.q_b_proj.weight") == [[0, 0, 24], [0, 24, 48]])
        #expect(try blocks(list, "model.layers.0.self_attn.q_b_proj.weight_scale_inv") == [[0, 0, 3], [0, 3, 6]])
        #expect(try blocks(list, "model.layers.0.self_attn.o_proj.weight") == [[1, 0, 16], [1, 16, 32]])
        #expect(try blocks(list, "model.layers.0.self_attn.o_proj.weight_scale_inv") == [[1, 0, 2], [1, 2, 4]])
        let coarse = try expected(block: 16)
        #expect(throws: ShardError.indivisible(
            tensor: "model.layers.0.self_attn.q_b_proj.weight",
            reason: "dimension 0 (48) holds 2 indivisible units (heads, quantization groups or rows) in FP8 blocks of 16, not a multiple of tp 2")) {
            _ = try blocks(coarse, "model.layers.0.self_attn.q_b_proj.weight")
        }
    }
}
