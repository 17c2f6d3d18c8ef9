import PackFormat
import Forward
import Parity
import Shard
import TestSupport
import Testing

@Suite("layer-major forward over a shard set")
struct LayerMajorShardTests {
    @Test("a shard set run layer-major, one window per batch, equals its own pass window by window")
    func sharded() throws {
        let dir = TemporaryDirectory()
        let out = dir.path + "/shards"
        _ = try ShardWriter.write(
            input: TestPaths.fixture("k25-tiny"), output: out, options: ShardWriter.Options(layout: ShardLayout(tp: 2, ep: 2, visionOnEveryRank: true)))
        let pass = try ShardSet.open(folder: out, threads: 2)
        let windows = 3, tokens = 6
        let ids = ModelAgreement.probeIDs(count: windows * tokens, vocab: pass.forward.vocabSize)
        var alone: [Float] = []
        for w in 0..<windows {
            alone += try pass.logits(for: Array(ids[(w * tokens)..<((w + 1) * tokens)]), batch: .init(sequences: 1, tokens: tokens))
        }
        let layerMajor = try LayerMajorForward(pass: pass).logits(ids: ids, windows: windows, tokens: tokens)
        #expect(layerMajor == alone)
    }
}
