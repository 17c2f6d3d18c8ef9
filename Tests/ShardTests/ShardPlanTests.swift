import Inspection
import Shard
import TestSupport
import Testing

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
        #expect(throws: ShardError.layout("8 routed experts do not divide into 3 expert-parallel groups")) { _ = try plan("k25-tiny", tp: 1, ep: 3) }
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
