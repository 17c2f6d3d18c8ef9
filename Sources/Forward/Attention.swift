import Foundation

/// Where each value of multi-head latent attention's activations lives (row-major, `rows = batch × tokens`):
/// the index arithmetic of the attention code, named once.
struct AttentionLayout {
    /// Rows of the batch and heads (a tensor-parallel rank: its block of them).
    let rows: Int
    let heads: Int
    /// Per-head widths: the non-rotated and rotated parts of a query / key, and a value.
    let nope: Int
    let rope: Int
    let value: Int
    let kvLoraRank: Int

    /// A query head's width, `nope + rope`.
    var qk: Int { nope + rope }
    /// A head's width in kv_b's output, `[k_nope | v]`.
    var kv: Int { nope + value }

    /// Start of query `[row, head]` in q `[rows, heads, nope + rope]`; its rope part starts `nope` later.
    func query(row: Int, head: Int) -> Int { (row * heads + head) * qk }
    /// Start of key `[row, head]`'s non-rotated part in kv `[rows, heads, nope + v]`.
    func key(row: Int, head: Int) -> Int { (row * heads + head) * kv }
    /// Start of value `[row, head]` in kv `[rows, heads, nope + v]`.
    func value(row: Int, head: Int) -> Int { (row * heads + head) * kv + nope }
    /// Start of the shared rotated key of `row` in kRope `[rows, rope]` (one head, shared by all).
    func ropeKey(row: Int) -> Int { row * rope }
    /// Start of `[row, head]` in the attention context `[rows, heads, v]`.
    func context(row: Int, head: Int) -> Int { (row * heads + head) * value }
    /// kv_a's output `[rows, kv_lora_rank + rope]`: the latent of `row` starts here, its rotated key
    /// `kvLoraRank` later.
    func compressed(row: Int) -> Int { row * (kvLoraRank + rope) }
}

/// MLA's projections of one batch: queries, per-head keys and values, and the shared rotated key.
struct AttentionProjections {
    var layout: AttentionLayout
    /// `[rows, heads, nope + rope]`.
    var q: [Float]
    /// `[rows, heads, nope + v]`: `[k_nope | v]` per head.
    var kv: [Float]
    /// `[rows, rope]`.
    var kRope: [Float]
}

extension ForwardPass {
    /// Multi-head latent attention, plain (non-absorbed) form. x [rows, hidden] → [rows, hidden].
    func attention(_ w: AttentionWeights, layer: Int, _ x: [Float], batch: Batch) throws(ForwardError) -> [Float] {
        var p = try projections(w, layer: layer, x, rows: batch.rows)
        applyRoPE(&p, batch: batch)
        return linear(causalAttention(p, batch: batch), w.o)
    }

    /// `q = q_b · rmsnorm(q_a · x)`; `[latent | k_rope] = kv_a · x`; `[k_nope | v] = kv_b · rmsnorm(latent)`.
    func projections(_ w: AttentionWeights, layer: Int, _ x: [Float], rows: Int) throws(ForwardError) -> AttentionProjections {
        let c = config
        let latentEps = variant.latentNormEps(layer: layer, reference: c.latentNormEps)
        // The heads are q_b's (a tensor-parallel rank holds a block of them).
        let heads = c.qkHeadDim > 0 ? w.qB.rows / c.qkHeadDim : 0
        let layout = AttentionLayout(rows: rows, heads: heads, nope: c.qkNopeHeadDim, rope: c.qkRopeHeadDim, value: c.vHeadDim, kvLoraRank: c.kvLoraRank)
        // q = q_b · rmsnorm(q_a · x)                                  [rows, heads·(nope+rope)]
        // [c | k_rope] = kv_a · x                                      [rows, kv_lora + rope]; k_rope: one head
        // (q_a and kv_a in one step, then q_b and kv_b, when decoding: `linearPair`.)
        let projected = linearPair((x, w.qA), (x, w.kvA))
        var qa = projected.0
        let kva = projected.1
        rmsNorm(&qa, width: c.qLoraRank, weight: w.qANorm, eps: latentEps)
        var latent = [Float](repeating: 0, count: rows * layout.kvLoraRank)
        var kRope = [Float](repeating: 0, count: rows * layout.rope)
        for r in 0..<rows {
            let from = layout.compressed(row: r)
            for j in 0..<layout.kvLoraRank { latent[r * layout.kvLoraRank + j] = kva[from + j] }
            for j in 0..<layout.rope { kRope[layout.ropeKey(row: r) + j] = kva[from + layout.kvLoraRank + j] }
        }
        rmsNorm(&latent, width: layout.kvLoraRank, weight: w.kvANorm, eps: latentEps)
        // [k_nope | v] = kv_b · c                                     [rows, heads·(nope+v)]
        guard w.qB.rows == heads * layout.qk, w.kvB.rows == heads * layout.kv, w.o.cols == heads * layout.value else {
            throw .wrongTensor(
                name: w.kvB.name,
                reason: "q_b holds \(w.qB.rows / max(layout.qk, 1)) heads, kv_b \(w.kvB.rows / max(layout.kv, 1)) and o_proj \(w.o.cols / max(layout.value, 1))")
        }
        let (q, kv) = linearPair((qa, w.qB), (latent, w.kvB))
        return AttentionProjections(layout: layout, q: q, kv: kv, kRope: kRope)
    }

    /// RoPE on every query head's rope part and on the shared rotated key, position = token index within its
    /// sequence.
    func applyRoPE(_ p: inout AttentionProjections, batch: Batch) {
        let layout = p.layout
        for r in 0..<layout.rows {
            let position = Float(r % batch.tokens)
            for h in 0..<layout.heads { rotate(&p.q, at: layout.query(row: r, head: h) + layout.nope, position: position) }
            rotate(&p.kRope, at: layout.ropeKey(row: r), position: position)
        }
    }

    /// `softmax(q·kᵀ · scale + causal mask) · v`, per sequence and head: the context `[rows, heads·v]`.
    func causalAttention(_ p: AttentionProjections, batch: Batch) -> [Float] {
        let layout = p.layout, q = p.q, kv = p.kv, kRope = p.kRope
        let nope = layout.nope, rope = layout.rope, vDim = layout.value
        let scale = config.softmaxScale
        var context = [Float](repeating: 0, count: layout.rows * layout.heads * vDim)
        var scores = [Float](repeating: 0, count: batch.tokens)
        for s in 0..<batch.sequences {
            let first = s * batch.tokens
            for h in 0..<layout.heads {
                for t in 0..<batch.tokens {
                    let qRow = layout.query(row: first + t, head: h)
                    var maxScore = -Float.infinity
                    for u in 0...t {
                        let kRow = layout.key(row: first + u, head: h), kRopeRow = layout.ropeKey(row: first + u)
                        var dot: Float = 0
                        for d in 0..<nope { dot += q[qRow + d] * kv[kRow + d] }
                        for d in 0..<rope { dot += q[qRow + nope + d] * kRope[kRopeRow + d] }
                        scores[u] = dot * scale
                        maxScore = max(maxScore, scores[u])
                    }
                    var sum: Float = 0
                    for u in 0...t {
                        scores[u] = Foundation.exp(scores[u] - maxScore)
                        sum += scores[u]
                    }
                    let out = layout.context(row: first + t, head: h)
                    for u in 0...t {
                        let weight = scores[u] / sum
                        let vRow = layout.value(row: first + u, head: h)
                        for d in 0..<vDim { context[out + d] += weight * kv[vRow + d] }
                    }
                }
            }
        }
        return context
    }

    /// Rotates one head's rope slice in place: interleaved pairs `(x[2j], x[2j+1])` (DeepSeek's stored layout),
    /// or halves `(x[j], x[j + rope/2])` when the config sets `rope_interleave` false.
    func rotate(_ v: inout [Float], at start: Int, position: Float) {
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
}
