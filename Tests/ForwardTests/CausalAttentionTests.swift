@testable import Forward
import Foundation
import Testing
import TestSupport

/// The blocked attention (`CausalAttention.context`: sgemm tiles, masked softmax) against the plain triple loop
/// (`CausalAttention.reference`) on random projections.
@Suite("Blocked causal attention")
struct CausalAttentionTests {
    /// Random projections for `sequences` windows of `tokens`: 3 heads, nope 5, rope 4, value 6.
    static func projections(sequences: Int, tokens: Int, seed: UInt64, magnitude: Float = 2) -> AttentionProjections {
        var rng = SeededGenerator(seed: seed)
        let layout = AttentionLayout(rows: sequences * tokens, heads: 3, nope: 5, rope: 4, value: 6, kvLoraRank: 7)
        func random(_ count: Int) -> [Float] { (0..<count).map { _ in Float.random(in: -magnitude...magnitude, using: &rng) } }
        return AttentionProjections(
            layout: layout, q: random(layout.rows * layout.heads * layout.qk), kv: random(layout.rows * layout.heads * layout.kv),
            kRope: random(layout.rows * layout.rope))
    }

    /// The largest |a − b| and the first (row, head, dim) where it occurs.
    static func largestDifference(_ a: [Float], _ b: [Float], layout: AttentionLayout) -> (value: Float, row: Int, head: Int, dim: Int) {
        var worst: (value: Float, row: Int, head: Int, dim: Int) = (0, 0, 0, 0)
        for i in 0..<a.count where abs(a[i] - b[i]) > worst.value || a[i].isNaN != b[i].isNaN {
            let value = a[i].isNaN != b[i].isNaN ? .infinity : abs(a[i] - b[i])
            worst = (value, i / (layout.heads * layout.value), (i / layout.value) % layout.heads, i % layout.value)
        }
        return worst
    }

    /// (sequences, tokens, tile): T = 1, odd T, T a multiple of the tile, one past and one short of it, the
    /// default tile (nil) and a tile of one query.
    static let shapes: [(Int, Int, Int?)] = [
        (1, 1, nil), (2, 1, 4), (1, 7, nil), (2, 7, 3), (1, 16, 8), (3, 17, 8), (2, 15, 8), (1, 9, 1), (2, 33, nil), (1, 300, nil),
    ]

    @Test("blocked attention equals the plain loop to float32 rounding", arguments: 0..<10)
    func matchesReference(_ index: Int) {
        let (sequences, tokens, tile) = Self.shapes[index]
        let p = Self.projections(sequences: sequences, tokens: tokens, seed: UInt64(100 + index))
        let batch = ForwardPass.Batch(sequences: sequences, tokens: tokens)
        let scale: Float = 0.4
        let blocked = CausalAttention.context(p, batch: batch, scale: scale, threads: 2, tile: tile)
        let plain = CausalAttention.reference(p, batch: batch, scale: scale)
        #expect(blocked.count == plain.count)
        let worst = Self.largestDifference(blocked, plain, layout: p.layout)
        // Values are convex combinations of entries in [-2, 2]: an absolute bound is the right measure.
        #expect(worst.value <= 1e-5, "\(sequences) × \(tokens) tokens, tile \(tile.map(String.init) ?? "default"): largest difference \(worst.value) at row \(worst.row), head \(worst.head), dim \(worst.dim)")
    }

    @Test("peaked scores (large logits) stay within rounding of the plain loop")
    func peaked() {
        let p = Self.projections(sequences: 2, tokens: 21, seed: 7, magnitude: 6)
        let batch = ForwardPass.Batch(sequences: 2, tokens: 21)
        let blocked = CausalAttention.context(p, batch: batch, scale: 1, threads: 3, tile: 5)
        let plain = CausalAttention.reference(p, batch: batch, scale: 1)
        let worst = Self.largestDifference(blocked, plain, layout: p.layout)
        // Values up to 6 and scores in the tens: float32 rounding of the scores moves the weights by ~1e-5 relative.
        #expect(worst.value <= 1e-4, "largest difference \(worst.value) at row \(worst.row), head \(worst.head), dim \(worst.dim)")
    }

    @Test("the result does not depend on the thread count")
    func threadCount() {
        let p = Self.projections(sequences: 3, tokens: 19, seed: 11)
        let batch = ForwardPass.Batch(sequences: 3, tokens: 19)
        let one = CausalAttention.context(p, batch: batch, scale: 0.3, threads: 1)
        for threads in [2, 3, 16] {
            #expect(CausalAttention.context(p, batch: batch, scale: 0.3, threads: threads) == one, "\(threads) threads")
        }
    }

    @Test("the softmax kernel's exponential is within 3e-7 relative of expf on [−87, 0]")
    func exponential() {
        var worst: (error: Float, x: Float) = (0, 0)
        var x: Float = -87
        while x <= 0 {
            for y in [x, x.nextUp, -x.ulp * 3 + x] where y <= 0 && y >= -87 {
                let error = abs(Kernels.expNonpositive(y) - Foundation.exp(y)) / Foundation.exp(y)
                if error > worst.error { worst = (error, y) }
            }
            x += 0.0137
        }
        #expect(worst.error <= 3e-7, "largest relative error \(worst.error) at x = \(worst.x)")
        #expect(Kernels.expNonpositive(0) == 1)
        // Below −87: taken as −87 (a tiny positive number, never 0, infinity or NaN).
        for tiny in [-88, -1000, -Float.infinity, -Float.nan] {
            let value = Kernels.expNonpositive(tiny)
            #expect(value > 0 && value < 1e-37, "e^\(tiny) gave \(value)")
        }
    }

    @Test("the softmax kernel: every level gives the same bits; rows sum to 1; masked entries are 0")
    func softmaxLevels() {
        var rng = SeededGenerator(seed: 5)
        for (valid, count) in [(1, 1), (1, 9), (5, 5), (7, 16), (8, 8), (9, 20), (16, 16), (17, 33), (64, 64), (100, 128), (300, 301)] {
            let row = (0..<count).map { _ in Float.random(in: -30...30, using: &rng) }
            var results: [[Float]] = []
            for level in Kernels.Level.allCases {
                var copy = row
                copy.withUnsafeMutableBufferPointer { Kernels.softmaxRow(level: level, $0.baseAddress!, valid: valid, count: count) }
                results.append(copy)
            }
            for (level, result) in zip(Kernels.Level.allCases, results) {
                #expect(result == results[0], "\(level) differs from portable at \(valid) of \(count)")
            }
            let sum = results[0][..<valid].reduce(0, +)
            #expect(abs(sum - 1) <= 1e-5, "\(valid) of \(count): sum \(sum)")
            #expect(results[0][valid...].allSatisfy { $0 == 0 }, "\(valid) of \(count): masked entries not 0")
            // Against the plain definition with expf.
            let top = row[..<valid].max()!
            let e = row[..<valid].map { Foundation.exp($0 - top) }
            let total = e.reduce(0, +)
            let worst = zip(results[0], e).map { abs($0 - $1 / total) }.max() ?? 0
            #expect(worst <= 1e-6, "\(valid) of \(count): largest difference from expf's softmax \(worst)")
        }
    }

    @Test("the query tile is bounded by the score budget and the window")
    func tileBounds() {
        #expect(CausalAttention.queryTile(tokens: 1) == 1)
        #expect(CausalAttention.queryTile(tokens: 100) == 100)
        #expect(CausalAttention.queryTile(tokens: 4096) == CausalAttention.maxQueryTile)
        let huge = 1 << 22
        #expect(CausalAttention.queryTile(tokens: huge) * huge <= max(CausalAttention.scoreFloats, huge))
    }
}
