import Dispatch
import Foundation
import TensorCore

/// The reference forward pass of the DeepSeek-V3 / Kimi K2.x language model in float32, written for clarity:
/// one function per block, shapes in comments. Activations are row-major `[rows, width]` with
/// `rows = batch × tokens`; every sequence starts at position 0, causal, no padding.
/// Weights are decoded from their stored form a block of rows at a time, so memory stays bounded by one layer's
/// largest block plus activations.
public final class ForwardPass: LanguageModelPass, @unchecked Sendable {
    public let weights: ModelWeights
    public let threads: Int
    private let inverseFrequencies: [Float]
    private var config: ForwardConfig { weights.forward }
    public var forward: ForwardConfig { weights.forward }
    public var dequant: Dequantization { weights.dequant }

    /// The shape of a batch of sequences.
    public struct Batch: Sendable, Equatable {
        public var sequences: Int
        public var tokens: Int
        public var rows: Int { sequences * tokens }
        public init(sequences: Int, tokens: Int) {
            self.sequences = sequences
            self.tokens = tokens
        }
    }

    /// What one decoder layer produced.
    public struct LayerResult: Sendable {
        /// `[rows, hidden]` each.
        public var attentionOut: [Float]
        public var mlpOut: [Float]
        public var output: [Float]
        /// MoE layers: `[rows, top_k]` chosen experts, and per row the gap between the k-th and (k+1)-th
        /// selection score (how close the choice was to flipping).
        public var topK: [Int32]?
        public var margins: [Float]?
    }

    public init(weights: ModelWeights, threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.weights = weights
        self.threads = max(1, threads)
        inverseFrequencies = weights.forward.rope.inverseFrequencies
        // Parallelism is ours (weight rows, experts, heads); OpenBLAS runs single-threaded inside each worker,
        // which avoids its threads spinning against ours on small products.
        Gemm.threads = 1
    }

    // MARK: - Whole model

    /// `ids` [rows] → hidden states [rows, hidden]. A rank holding a block of the vocabulary fills the rows of
    /// its own tokens and leaves the others zero (the ranks' sum is the whole lookup).
    public func embed(_ ids: [Int32]) throws(ForwardError) -> [Float] {
        let table = try weights.matrix("embedding", layer: nil)
        let first = try weights.firstRow("embedding", layer: nil)
        var h = [Float](repeating: 0, count: ids.count * config.hiddenSize)
        for (r, id) in ids.enumerated() {
            guard id >= 0, Int(id) < config.vocabSize else {
                throw .input("token id \(id) at position \(r) is outside the vocabulary of \(config.vocabSize)")
            }
            let row = Int(id) - first
            guard row >= 0, row < table.rows else { continue }
            h.withUnsafeMutableBufferPointer { table.decodeRows(row..<(row + 1), into: $0.baseAddress! + r * config.hiddenSize) }
        }
        weights.store.releaseViewed()
        return h
    }

    /// Final RMSNorm: [rows, hidden] → [rows, hidden].
    public func finalNorm(_ h: [Float]) throws(ForwardError) -> [Float] {
        var x = h
        rmsNorm(&x, width: config.hiddenSize, weight: try weights.vector("final_norm", layer: nil), eps: config.rmsNormEps)
        return x
    }

    /// The slot lm_head reads (the embedding when they are tied).
    var headSlot: String { config.text.tieWordEmbeddings ? "embedding" : "lm_head" }

    /// lm_head: [rows, hidden] → logits [rows, vocab] (a rank: its block of the vocabulary).
    public func logits(_ normed: [Float]) throws(ForwardError) -> [Float] {
        let y = linear(normed, try weights.matrix(headSlot, layer: nil))
        weights.store.releaseViewed()
        return y
    }

    // MARK: - Decoder layer

    /// `h += attention(rmsnorm(h)); h += mlp(rmsnorm(h))`, input and output [rows, hidden].
    public func layer(_ index: Int, input h: [Float], batch: Batch) throws(ForwardError) -> LayerResult {
        let result = try decoderLayer(
            index, input: h, batch: batch, attention: { x throws(ForwardError) in try self.attention(index, x, batch: batch) },
            moe: { y throws(ForwardError) in try self.moe(index, y, rows: batch.rows) },
            denseMLP: { y throws(ForwardError) in try self.denseMLP(index, y) })
        weights.store.releaseViewed()
        return result
    }

    /// One decoder layer around its attention and MLP blocks (this model's own, or a sharded model's sums of
    /// its ranks'): the norms and residual adds are the same either way.
    func decoderLayer(
        _ index: Int, input h: [Float], batch: Batch, attention: ([Float]) throws(ForwardError) -> [Float],
        moe: ([Float]) throws(ForwardError) -> (out: [Float], topK: [Int32], margins: [Float]),
        denseMLP: ([Float]) throws(ForwardError) -> [Float]
    ) throws(ForwardError) -> LayerResult {
        let H = config.hiddenSize
        precondition(h.count == batch.rows * H, "layer input does not match the batch")
        var x = h
        rmsNorm(&x, width: H, weight: try weights.vector("input_norm", layer: index), eps: config.rmsNormEps)
        let attention = try attention(x)
        var mid = h
        for i in 0..<mid.count { mid[i] += attention[i] }
        var y = mid
        rmsNorm(&y, width: H, weight: try weights.vector("post_attention_norm", layer: index), eps: config.rmsNormEps)
        var result = LayerResult(attentionOut: attention, mlpOut: [], output: [], topK: nil, margins: nil)
        if config.isMoELayer(index) {
            let moe = try moe(y)
            result.mlpOut = moe.out
            result.topK = moe.topK
            result.margins = moe.margins
        } else {
            result.mlpOut = try denseMLP(y)
        }
        for i in 0..<mid.count { mid[i] += result.mlpOut[i] }
        result.output = mid
        return result
    }

    /// The dense layers' MLP. x [rows, hidden] → [rows, hidden].
    func denseMLP(_ layer: Int, _ x: [Float]) throws(ForwardError) -> [Float] {
        try mlp(x, gate: weights.matrix("dense_mlp_gate", layer: layer), up: weights.matrix("dense_mlp_up", layer: layer),
                down: weights.matrix("dense_mlp_down", layer: layer))
    }

    // MARK: - MLA attention

    /// Multi-head latent attention, plain (non-absorbed) form. x [rows, hidden] → [rows, hidden].
    func attention(_ layer: Int, _ x: [Float], batch: Batch) throws(ForwardError) -> [Float] {
        let c = config
        let nope = c.qkNopeHeadDim, rope = c.qkRopeHeadDim, vDim = c.vHeadDim, qk = c.qkHeadDim
        let latentEps = weights.variant.applies(to: layer) ? (weights.variant.latentNormEps ?? c.latentNormEps) : c.latentNormEps
        // The heads are q_b's (a tensor-parallel rank holds a block of them).
        let qb = try weights.matrix("attn_q_b", layer: layer)
        let heads = qk > 0 ? qb.rows / qk : 0
        // q = q_b · rmsnorm(q_a · x)                                  [rows, heads·(nope+rope)]
        var qa = linear(x, try weights.matrix("attn_q_a", layer: layer))
        rmsNorm(&qa, width: c.qLoraRank, weight: try weights.vector("attn_q_a_norm", layer: layer), eps: latentEps)
        var q = linear(qa, qb)
        // [c | k_rope] = kv_a · x                                      [rows, kv_lora + rope]; k_rope: one head
        let kva = linear(x, try weights.matrix("attn_kv_a", layer: layer))
        let rows = batch.rows
        var latent = [Float](repeating: 0, count: rows * c.kvLoraRank)
        var kRope = [Float](repeating: 0, count: rows * rope)
        for r in 0..<rows {
            for j in 0..<c.kvLoraRank { latent[r * c.kvLoraRank + j] = kva[r * (c.kvLoraRank + rope) + j] }
            for j in 0..<rope { kRope[r * rope + j] = kva[r * (c.kvLoraRank + rope) + c.kvLoraRank + j] }
        }
        rmsNorm(&latent, width: c.kvLoraRank, weight: try weights.vector("attn_kv_a_norm", layer: layer), eps: latentEps)
        // [k_nope | v] = kv_b · c                                     [rows, heads·(nope+v)]
        let kvb = try weights.matrix("attn_kv_b", layer: layer), o = try weights.matrix("attn_o", layer: layer)
        guard qb.rows == heads * qk, kvb.rows == heads * (nope + vDim), o.cols == heads * vDim else {
            throw .wrongTensor(name: kvb.name, reason: "q_b holds \(qb.rows / max(qk, 1)) heads, kv_b \(kvb.rows / max(nope + vDim, 1)) and o_proj \(o.cols / max(vDim, 1))")
        }
        let kv = linear(latent, kvb)
        // RoPE on q's rope slice (every head) and on k_rope, position = token index within its sequence.
        for r in 0..<rows {
            let position = Float(r % batch.tokens)
            for h in 0..<heads { rotate(&q, at: (r * heads + h) * qk + nope, position: position) }
            rotate(&kRope, at: r * rope, position: position)
        }
        // softmax(q·kᵀ · scale + causal mask) · v, per sequence and head  [rows, heads·v]
        let scale = c.softmaxScale
        var context = [Float](repeating: 0, count: rows * heads * vDim)
        var scores = [Float](repeating: 0, count: batch.tokens)
        for s in 0..<batch.sequences {
            let first = s * batch.tokens
            for h in 0..<heads {
                for t in 0..<batch.tokens {
                    let qRow = ((first + t) * heads + h) * qk
                    var maxScore = -Float.infinity
                    for u in 0...t {
                        let kRow = ((first + u) * heads + h) * (nope + vDim)
                        var dot: Float = 0
                        for d in 0..<nope { dot += q[qRow + d] * kv[kRow + d] }
                        for d in 0..<rope { dot += q[qRow + nope + d] * kRope[(first + u) * rope + d] }
                        scores[u] = dot * scale
                        maxScore = max(maxScore, scores[u])
                    }
                    var sum: Float = 0
                    for u in 0...t {
                        scores[u] = Foundation.exp(scores[u] - maxScore)
                        sum += scores[u]
                    }
                    let out = ((first + t) * heads + h) * vDim
                    for u in 0...t {
                        let p = scores[u] / sum
                        let vRow = ((first + u) * heads + h) * (nope + vDim) + nope
                        for d in 0..<vDim { context[out + d] += p * kv[vRow + d] }
                    }
                }
            }
        }
        return linear(context, o)
    }

    /// Rotates one head's rope slice in place: interleaved pairs `(x[2j], x[2j+1])` (DeepSeek's stored layout),
    /// or halves `(x[j], x[j + rope/2])` when the config sets `rope_interleave` false.
    private func rotate(_ v: inout [Float], at start: Int, position: Float) {
        let half = config.qkRopeHeadDim / 2
        let amplitude = config.rope.amplitude
        for j in 0..<half {
            let angle = position * inverseFrequencies[j]
            let cos = Foundation.cos(angle) * amplitude, sin = Foundation.sin(angle) * amplitude
            let (a, b) = config.ropeInterleave ? (start + 2 * j, start + 2 * j + 1) : (start + j, start + j + half)
            let x0 = v[a], x1 = v[b]
            v[a] = x0 * cos - x1 * sin
            v[b] = x1 * cos + x0 * sin
        }
    }

    // MARK: - MLPs and experts

    /// SwiGLU: `down(silu(gate·x) ⊙ up·x)`. x [rows, in] → [rows, out].
    func mlp(_ x: [Float], gate: WeightMatrix, up: WeightMatrix, down: WeightMatrix, workers: Int? = nil) -> [Float] {
        var g = linear(x, gate, workers: workers)
        let u = linear(x, up, workers: workers)
        for i in 0..<g.count { g[i] = g[i] / (1 + Foundation.exp(-g[i])) * u[i] }
        return linear(g, down, workers: workers)
    }

    /// Sigmoid router (correction bias for selection only, group limit, top-k, normalization, routed scaling)
    /// and the weighted sum of the chosen experts, plus the shared expert. x [rows, hidden] → [rows, hidden].
    /// A rank of a sharded model computes the experts it holds (`routed`) and its block of the shared expert
    /// (`shared`); the router is everyone's.
    func moe(_ layer: Int, _ x: [Float], rows: Int, routed: Bool = true, shared: Bool = true) throws(ForwardError)
        -> (out: [Float], topK: [Int32], margins: [Float])
    {
        let routing = config.routing, H = config.hiddenSize, E = routing.experts, k = routing.topK
        let variant = weights.variant.applies(to: layer) ? weights.variant : .none
        let logits = linear(x, try weights.matrix("router", layer: layer))           // [rows, E], float32
        let bias = weights.has("router_bias", layer: layer) ? try weights.vector("router_bias", layer: layer) : [Float](repeating: 0, count: E)
        var chosen = [Int32](repeating: 0, count: rows * k)
        var margins = [Float](repeating: 0, count: rows)
        var routeWeights = [Float](repeating: 0, count: rows * k)
        let perGroup = E / routing.groups
        for r in 0..<rows {
            let scores = (0..<E).map { 1 / (1 + Foundation.exp(-logits[r * E + $0])) }
            var choice = (0..<E).map { variant.routerBiasIgnored ? scores[$0] : scores[$0] + bias[$0] }
            if routing.groups > 1 {
                // Group score = sum of its two best; keep the best topk_group groups.
                let groupScores = (0..<routing.groups).map { g -> Float in
                    let best = choice[(g * perGroup)..<((g + 1) * perGroup)].sorted(by: >)
                    return best[0] + best[1]
                }
                let kept = Set(Self.topIndices(groupScores, routing.topKGroups))
                for e in 0..<E where !kept.contains(e / perGroup) { choice[e] = -.infinity }
            }
            let top = Self.topIndices(choice, k + (k < E ? 1 : 0))
            let picked = Array(top.prefix(k))
            margins[r] = top.count > k && choice[top[k]].isFinite ? choice[top[k - 1]] - choice[top[k]] : .infinity
            var w = picked.map { variant.routerBiasInWeights ? choice[$0] : scores[$0] }
            if routing.normalize {
                let sum = w.reduce(0, +) + 1e-20
                w = w.map { $0 / sum }
            }
            for j in 0..<k {
                chosen[r * k + j] = Int32(picked[j])
                routeWeights[r * k + j] = w[j] * routing.scalingFactor
            }
        }
        // Routed experts, computed in parallel (one expert per worker at a time), then summed in expert order:
        // out[r] += w · expert(x[r]). The order of the sum does not depend on the thread count.
        var assigned = [[(row: Int, weight: Float)]](repeating: [], count: E)
        for r in 0..<rows { for j in 0..<k { assigned[Int(chosen[r * k + j])].append((r, routeWeights[r * k + j])) } }
        let held = routed ? weights.experts.clamped(to: 0..<E) : 0..<0
        let active = held.filter { !assigned[$0].isEmpty }
        let lists = active.map { assigned[$0] }
        let matrices = try active.map { e throws(ForwardError) in
            (try weights.matrix("routed_expert_gate", layer: layer, expert: e), try weights.matrix("routed_expert_up", layer: layer, expert: e),
             try weights.matrix("routed_expert_down", layer: layer, expert: e))
        }
        let results = parallelMap(count: active.count, width: threads) { i -> [Float] in
            let list = lists[i]
            var xe = [Float](repeating: 0, count: list.count * H)
            for (j, item) in list.enumerated() { for d in 0..<H { xe[j * H + d] = x[item.row * H + d] } }
            let (gate, up, down) = matrices[i]
            return self.mlp(xe, gate: gate, up: up, down: down, workers: 1)
        }
        var out = [Float](repeating: 0, count: rows * H)
        for (i, e) in active.enumerated() {
            for (j, item) in assigned[e].enumerated() { for d in 0..<H { out[item.row * H + d] += results[i][j * H + d] * item.weight } }
        }
        if shared, config.text.numSharedExperts > 0 {
            let shared = mlp(x, gate: try weights.matrix("shared_expert_gate", layer: layer),
                             up: try weights.matrix("shared_expert_up", layer: layer), down: try weights.matrix("shared_expert_down", layer: layer))
            for i in 0..<out.count { out[i] += shared[i] }
        }
        return (out, chosen, margins)
    }

    /// Indices of the `k` largest values, largest first (ties: lower index first).
    static func topIndices(_ values: [Float], _ k: Int) -> [Int] {
        Array(values.indices.sorted { values[$0] != values[$1] ? values[$0] > values[$1] : $0 < $1 }.prefix(k))
    }

    // MARK: - Kernels

    /// `x · rsqrt(mean(x²) + eps) · weight` per row, in place.
    func rmsNorm(_ x: inout [Float], width: Int, weight: [Float], eps: Float) {
        precondition(weight.count == width && x.count % max(width, 1) == 0, "rmsNorm: sizes do not match")
        let rows = width == 0 ? 0 : x.count / width
        for r in 0..<rows {
            var sum: Float = 0
            for j in 0..<width { sum += x[r * width + j] * x[r * width + j] }
            let inv = 1 / (sum / Float(width) + eps).squareRoot()
            for j in 0..<width { x[r * width + j] = x[r * width + j] * inv * weight[j] }
        }
    }

    /// `y = x · Wᵀ`: x [rows, in] → y [rows, out]. W's rows are split among `workers` threads; each decodes
    /// its rows into float32 blocks of at most 4 MiB and multiplies them (single-threaded OpenBLAS) into its
    /// columns of y. Work is split by weight rows, so the result does not depend on the thread count.
    func linear(_ x: [Float], _ w: WeightMatrix, workers: Int? = nil) -> [Float] {
        precondition(w.cols > 0 && x.count % w.cols == 0, "linear: input width does not match \(w.name)")
        let rows = x.count / w.cols
        var y = [Float](repeating: 0, count: rows * w.rows)
        guard rows > 0, w.rows > 0 else { return y }
        let blockRows = max(1, min(w.rows, (1 << 20) / w.cols))
        // Small matrices are not worth a thread hand-off.
        let width = w.rows * w.cols < (1 << 16) ? 1 : min(workers ?? threads, (w.rows + blockRows - 1) / blockRows)
        let share = (w.rows + width - 1) / width
        // Matrices larger than a block give their pages back as they go (routed experts are small and may be
        // used again by the next token group; they are released with the layer).
        let releaseAfterUse = w.rows > blockRows
        let fused = rows <= FusedKernels.maxTokens && FusedKernels.supports(w)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                let input = UnsafeSendable(UnsafeMutablePointer(mutating: xp.baseAddress!)), output = UnsafeSendable(yp.baseAddress!)
                let body: @Sendable (Int) -> Void = { worker in
                    let block = UnsafeMutablePointer<Float>.allocate(capacity: fused ? 0 : blockRows * w.cols)
                    defer { block.deallocate() }
                    var start = worker * share
                    let end = min(w.rows, start + share)
                    while start < end {
                        let count = min(blockRows, end - start)
                        if fused {
                            FusedKernels.rows(w, start..<(start + count), x: input.pointer, m: rows, y: output.pointer, ldy: w.rows)
                        } else {
                            w.decodeRows(start..<(start + count), into: block)
                            Gemm.linear(input.pointer, block, output.pointer + start, m: rows, n: count, k: w.cols, ldy: w.rows)
                        }
                        if releaseAfterUse { w.releaseRows(start..<(start + count)) }
                        start += count
                    }
                }
                if width == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: width, execute: body) }
            }
        }
        return y
    }
}

/// A raw pointer handed to worker threads that read it or write disjoint ranges of it.
struct UnsafeSendable: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}

/// A language model's forward pass, block by block: one model's (`ForwardPass`) or a sharded model's, whose
/// ranks' partial results are combined as the collectives of a real deployment would (`ShardedForward`).
public protocol LanguageModelPass: AnyObject, Sendable {
    /// The whole model's configuration.
    var forward: ForwardConfig { get }
    var dequant: Dequantization { get }
    func embed(_ ids: [Int32]) throws(ForwardError) -> [Float]
    func layer(_ index: Int, input h: [Float], batch: ForwardPass.Batch) throws(ForwardError) -> ForwardPass.LayerResult
    func finalNorm(_ h: [Float]) throws(ForwardError) -> [Float]
    func logits(_ normed: [Float]) throws(ForwardError) -> [Float]
}

extension LanguageModelPass {
    /// The whole model: token ids [rows] → logits [rows, vocab], layer by layer.
    public func logits(for ids: [Int32], batch: ForwardPass.Batch) throws(ForwardError) -> [Float] {
        var h = try embed(ids)
        for l in 0..<forward.numLayers { h = try layer(l, input: h, batch: batch).output }
        return try logits(finalNorm(h))
    }
}
