import TensorCore

/// The forward pass of a sharded model, run from its ranks' own weights, each parallel block's partial results
/// combined through `Collectives` (in this process: `InProcessCollectives`, in rank order):
/// - embedding (vocabulary blocks): all-reduce of the ranks' lookups, each filling its own tokens' rows;
/// - attention (head blocks; o_proj split on its input) and MLPs (gate/up on the output, down on the input):
///   all-reduce (sum) of the tensor-parallel ranks' partial outputs;
/// - routed experts: all-reduce over the expert groups, each contributing the experts it holds (ranks split
///   them by their tp rule when there is one group);
/// - lm_head (vocabulary blocks): all-gather of the ranks' logits.
/// Blocks replicated across expert groups (attention, shared expert) are computed by group 0's ranks; the other
/// groups' copies are the same bytes (`shard --merge` checks that they agree). What each rank adds to the MoE
/// sum is its partition's (`WeightPartition.addsRoutedExperts`, `addsSharedExpert`).
public final class ShardedForward: LanguageModelPass {
    /// One forward pass per rank, in rank order (rank r: tp rank r % tp of expert group r / tp).
    public let ranks: [ForwardPass]
    public let collectives: any Collectives
    let tp: Int
    let ep: Int

    public init(ranks: [ForwardPass], collectives: any Collectives = InProcessCollectives()) throws(ForwardError) {
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
        self.collectives = collectives
    }

    public var forward: ForwardConfig { ranks[0].forward }
    public var dequant: Dequantization { ranks[0].dequant }
    /// Expert group 0's tensor-parallel ranks.
    var tensorGroup: Range<Int> { 0..<tp }

    public func embed(_ ids: [Int32]) throws(ForwardError) -> [Float] {
        try collectives.allReduce(tensorGroup.map { r throws(ForwardError) in try ranks[r].embed(ids) })
    }

    public func layer(_ index: Int, input h: [Float], batch: ForwardPass.Batch) throws(ForwardError) -> ForwardPass.LayerResult {
        let bound = try ranks.map { pass throws(ForwardError) in try LayerWeights(pass.weights, layer: index) }
        let result = try ranks[0].decoderLayer(bound[0], input: h, batch: batch, blocks: CombinedBlocks(model: self, weights: bound))
        for pass in ranks { pass.weights.releaseViewed() }
        return result
    }

    /// The ranks' blocks of one layer, combined.
    struct CombinedBlocks: DecoderBlocks {
        let model: ShardedForward
        /// Each rank's weights for the layer.
        let weights: [LayerWeights]

        func attention(_ x: [Float], batch: ForwardPass.Batch) throws(ForwardError) -> [Float] {
            try model.collectives.allReduce(model.tensorGroup.map { r throws(ForwardError) in
                try model.ranks[r].attention(weights[r].attention, layer: weights[r].index, x, batch: batch)
            })
        }

        func denseMLP(_ x: [Float]) throws(ForwardError) -> [Float] {
            try model.collectives.allReduce(model.tensorGroup.map { r throws(ForwardError) in
                try ForwardPass.OwnBlocks(pass: model.ranks[r], weights: weights[r]).denseMLP(x)
            })
        }

        /// Every rank routes; a rank that adds neither routed experts nor its block of the shared expert
        /// contributes zeros. The routing reported is the first contributing rank's (all agree).
        func moe(_ x: [Float], rows: Int) throws(ForwardError) -> ForwardPass.MoEOutput {
            var routing: (topK: [Int32], margins: [Float])?
            let partials = try model.ranks.indices.map { r throws(ForwardError) -> [Float] in
                let pass = model.ranks[r], p = pass.weights.partition!
                guard p.addsRoutedExperts || p.addsSharedExpert else { return [Float](repeating: 0, count: x.count) }
                let part = try ForwardPass.OwnBlocks(pass: pass, weights: weights[r]).moe(x, rows: rows)
                if routing == nil { routing = (part.topK, part.margins) }
                return part.out
            }
            return ForwardPass.MoEOutput(out: try model.collectives.allReduce(partials), topK: routing?.topK ?? [], margins: routing?.margins ?? [])
        }
    }

    public func finalNorm(_ h: [Float]) throws(ForwardError) -> [Float] { try ranks[0].finalNorm(h) }

    /// All-gather: each tensor-parallel rank's block of the vocabulary, put in its place.
    public func logits(_ normed: [Float]) throws(ForwardError) -> [Float] {
        let vocab = forward.vocabSize, rows = normed.count / max(forward.hiddenSize, 1)
        let blocks = try tensorGroup.map { r throws(ForwardError) -> (first: Int, values: [Float]) in
            let pass = ranks[r]
            let part = try pass.logits(normed)
            let first = try pass.weights.firstRow(pass.headSlot, layer: nil)
            let width = part.count / max(rows, 1)
            guard first >= 0, first + width <= vocab else { throw .input("a rank's lm_head rows [\(first), \(first + width)) run past the vocabulary of \(vocab)") }
            return (first, part)
        }
        return try collectives.allGather(blocks, rows: rows, columns: vocab)
    }
}
