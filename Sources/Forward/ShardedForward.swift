import TensorCore

/// The forward pass of a sharded model, run from its ranks' own weights with each parallel block's collective
/// simulated in rank order:
/// - embedding (vocabulary blocks): all-reduce of the ranks' lookups, each filling its own tokens' rows;
/// - attention (head blocks; o_proj split on its input) and MLPs (gate/up on the output, down on the input):
///   all-reduce (sum) of the tensor-parallel ranks' partial outputs;
/// - routed experts: all-reduce over the expert groups, each contributing the experts it holds (ranks split
///   them by their tp rule when there is one group);
/// - lm_head (vocabulary blocks): all-gather of the ranks' logits.
/// Blocks replicated across expert groups (attention, shared expert) are computed by group 0's ranks; the other
/// groups' copies are the same bytes (`shard --merge` checks that they agree).
public final class ShardedForward: LanguageModelPass, @unchecked Sendable {
    /// One forward pass per rank, in rank order (rank r: tp rank r % tp of expert group r / tp).
    public let ranks: [ForwardPass]
    let tp: Int
    let ep: Int

    public init(ranks: [ForwardPass]) throws(ForwardError) {
        guard let first = ranks.first?.weights.partition else { throw .input("a sharded model needs its ranks' partitions") }
        tp = first.tp
        ep = first.ep
        for (r, pass) in ranks.enumerated() {
            guard let p = pass.weights.partition, p.tp == tp, p.ep == ep, p.tpRank == r % tp, p.epRank == r / tp else {
                throw .input("rank \(r) does not belong to tp \(tp) × ep \(ep) in rank order")
            }
        }
        guard ranks.count == tp * ep else { throw .input("tp \(tp) × ep \(ep) needs \(tp * ep) ranks, found \(ranks.count)") }
        self.ranks = ranks
    }

    public var forward: ForwardConfig { ranks[0].forward }
    public var dequant: Dequantization { ranks[0].dequant }
    /// Expert group 0's tensor-parallel ranks.
    var tensorGroup: ArraySlice<ForwardPass> { ranks[0..<tp] }

    /// The sum of `body` over `passes`, in their order.
    func allReduce(_ passes: some Sequence<ForwardPass>, _ body: (ForwardPass) throws(ForwardError) -> [Float]) throws(ForwardError) -> [Float] {
        var total: [Float]?
        for pass in passes {
            let part = try body(pass)
            if var sum = total {
                guard part.count == sum.count else { throw .input("ranks' partial results differ in size (\(part.count) vs \(sum.count))") }
                for i in 0..<sum.count { sum[i] += part[i] }
                total = sum
            } else {
                total = part
            }
        }
        return total ?? []
    }

    public func embed(_ ids: [Int32]) throws(ForwardError) -> [Float] {
        try allReduce(tensorGroup) { pass throws(ForwardError) in try pass.embed(ids) }
    }

    public func layer(_ index: Int, input h: [Float], batch: ForwardPass.Batch) throws(ForwardError) -> ForwardPass.LayerResult {
        let result = try ranks[0].decoderLayer(
            index, input: h, batch: batch,
            attention: { x throws(ForwardError) in
                try self.allReduce(self.tensorGroup) { pass throws(ForwardError) in try pass.attention(index, x, batch: batch) }
            },
            moe: { y throws(ForwardError) in
                var routing: (topK: [Int32], margins: [Float])?
                let out = try self.allReduce(self.ranks) { pass throws(ForwardError) in
                    let p = pass.weights.partition!
                    let routed = self.ep == 1 || p.tpRank == 0, shared = p.epRank == 0
                    guard routed || shared else { return [Float](repeating: 0, count: y.count) }
                    let part = try pass.moe(index, y, rows: batch.rows, routed: routed, shared: shared)
                    if routing == nil { routing = (part.topK, part.margins) }
                    return part.out
                }
                return (out, routing?.topK ?? [], routing?.margins ?? [])
            },
            denseMLP: { y throws(ForwardError) in
                try self.allReduce(self.tensorGroup) { pass throws(ForwardError) in try pass.denseMLP(index, y) }
            })
        for pass in ranks { pass.weights.store.releaseViewed() }
        return result
    }

    public func finalNorm(_ h: [Float]) throws(ForwardError) -> [Float] { try ranks[0].finalNorm(h) }

    /// All-gather: each tensor-parallel rank's block of the vocabulary, put in its place.
    public func logits(_ normed: [Float]) throws(ForwardError) -> [Float] {
        let vocab = forward.vocabSize, rows = normed.count / max(forward.hiddenSize, 1)
        var out = [Float](repeating: 0, count: rows * vocab)
        for pass in tensorGroup {
            let part = try pass.logits(normed)
            let first = try pass.weights.firstRow(pass.headSlot, layer: nil)
            let width = part.count / max(rows, 1)
            guard first >= 0, first + width <= vocab else { throw .input("a rank's lm_head rows [\(first), \(first + width)) run past the vocabulary of \(vocab)") }
            for r in 0..<rows {
                for j in 0..<width { out[r * vocab + first + j] = part[r * width + j] }
            }
        }
        return out
    }
}
