import Dispatch
import Foundation
import TensorCore

/// Causal softmax attention over MLA's projections, `softmax(q·kᵀ · scale + causal mask) · v` per sequence and
/// head, through OpenBLAS: for each (sequence, head) the keys `[k_nope | k_rope]` are gathered once into a
/// `[tokens, nope + rope]` block, then the queries go in tiles of `queryTile` rows: one sgemm gives the tile's
/// scores against every key up to its last query (times the softmax scale), the masked softmax runs row by row
/// (`Kernels.softmaxRow`, C), and a second sgemm multiplies the probabilities by the values (read in place,
/// strided among the heads). Memory per worker is one
/// key block and one tile of scores (`queryTile · tokens` floats), never `tokens² × heads`.
///
/// (Sequence, head) pairs are split among the workers; each pair is computed the same way whatever the thread
/// count, so the result does not depend on it. The sums run in OpenBLAS's order and the exponential is the C
/// kernel's polynomial, not the plain loop's (`reference`) order and `expf`: the two agree to float32 rounding
/// (`CausalAttentionTests`).
enum CausalAttention {
    /// Scores a worker holds at once, in floats (4 MiB): bounds the query tile at long contexts.
    static let scoreFloats = 1 << 20
    /// Queries per tile at most: big enough for sgemm's rate, small enough that the part of the last key block
    /// above the diagonal (computed, then masked) stays a small share of the work (tile / tokens).
    static let maxQueryTile = 128

    /// Queries per tile for windows of `tokens`.
    static func queryTile(tokens: Int) -> Int {
        max(1, min(tokens, maxQueryTile, scoreFloats / max(tokens, 1)))
    }

    /// The attention context `[rows, heads · v]` of projections `p` (RoPE applied) for `batch`'s sequences.
    /// `tile` overrides `queryTile` (tests, to reach the tile boundaries with small windows).
    static func context(_ p: AttentionProjections, batch: ForwardPass.Batch, scale: Float, threads: Int, tile: Int? = nil) -> [Float] {
        let layout = p.layout, tokens = batch.tokens, heads = layout.heads
        let qk = layout.qk, nope = layout.nope, rope = layout.rope, vDim = layout.value
        precondition(layout.rows == batch.rows, "CausalAttention: projections do not match the batch")
        var context = [Float](repeating: 0, count: layout.rows * heads * vDim)
        guard layout.rows > 0, heads > 0, vDim > 0, qk > 0 else { return reference(p, batch: batch, scale: scale) }
        let tileRows = max(1, min(tile ?? queryTile(tokens: tokens), tokens))
        let items = batch.sequences * heads
        let width = max(1, min(threads, items))
        p.q.withUnsafeBufferPointer { qBuffer in
            p.kv.withUnsafeBufferPointer { kvBuffer in
                p.kRope.withUnsafeBufferPointer { ropeBuffer in
                    context.withUnsafeMutableBufferPointer { outBuffer in
                        let q = SendablePointer(UnsafeMutablePointer(mutating: qBuffer.baseAddress!))
                        let kv = SendablePointer(UnsafeMutablePointer(mutating: kvBuffer.baseAddress!))
                        let kRope = rope > 0 ? SendablePointer(UnsafeMutablePointer(mutating: ropeBuffer.baseAddress!)) : nil
                        let out = SendablePointer(outBuffer.baseAddress!)
                        let body: @Sendable (Int) -> Void = { worker in
                            let keys = UnsafeMutablePointer<Float>.allocate(capacity: tokens * qk)
                            let scores = UnsafeMutablePointer<Float>.allocate(capacity: tileRows * tokens)
                            defer {
                                keys.deallocate()
                                scores.deallocate()
                            }
                            var item = worker
                            while item < items {
                                let first = (item / heads) * tokens, h = item % heads
                                // keys [tokens, nope + rope]: the head's k_nope, then the shared k_rope.
                                for u in 0..<tokens {
                                    let row = keys + u * qk
                                    row.update(from: kv.pointer + layout.key(row: first + u, head: h), count: nope)
                                    if let kRope { (row + nope).update(from: kRope.pointer + layout.ropeKey(row: first + u), count: rope) }
                                }
                                var start = 0
                                while start < tokens {
                                    let m = min(tileRows, tokens - start), n = start + m  // queries start..<n, keys 0..<n
                                    Gemm.multiply(
                                        q.pointer + layout.query(row: first + start, head: h), lda: heads * qk, keys, ldb: qk,
                                        transposeB: true, scores, ldc: n, m: m, n: n, k: qk, alpha: scale)
                                    for i in 0..<m { Kernels.softmaxRow(scores + i * n, valid: start + i + 1, count: n) }
                                    Gemm.multiply(
                                        scores, lda: n, kv.pointer + layout.value(row: first, head: h),
                                        ldb: heads * layout.kv, transposeB: false,
                                        out.pointer + layout.context(row: first + start, head: h), ldc: heads * vDim, m: m, n: vDim, k: n)
                                    start = n
                                }
                                item += width
                            }
                        }
                        if width == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: width, execute: body) }
                    }
                }
            }
        }
        return context
    }

    /// The plain loop, per sequence, head and query: the definition the blocked form is tested against.
    static func reference(_ p: AttentionProjections, batch: ForwardPass.Batch, scale: Float) -> [Float] {
        let layout = p.layout, q = p.q, kv = p.kv, kRope = p.kRope
        let nope = layout.nope, rope = layout.rope, vDim = layout.value
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
}

extension ForwardPass {
    /// Whether `K2PACK_PREFILL` is `plain` (benchmarks' "before", not a user option): attention then runs the plain
    /// loop (`CausalAttention.reference`) on one thread, and every product decodes blocks of at most 4 MiB, as the
    /// pass did before the blocked attention and the large blocks.
    static let plainPrefill = plainPrefill(environment: ProcessInfo.processInfo.environment["K2PACK_PREFILL"])

    static func plainPrefill(environment value: String?) -> Bool { value == "plain" }
}
