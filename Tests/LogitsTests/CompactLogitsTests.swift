import Foundation
import Parity
import TestSupport
import Testing

/// The compact form's KL divergence (top K + one tail bucket) against the full form's, on constructed cases.
@Suite("Compact reference logits")
struct CompactLogitsTests {
    /// A deterministic generator (SplitMix64) and its normal deviates.
    struct Numbers {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func uniform() -> Double { (Double(next() >> 11) + 0.5) / Double(1 << 53) }
        mutating func normal() -> Double { (-2 * log(uniform())).squareRoot() * cos(2 * .pi * uniform()) }
        mutating func permutation(_ n: Int) -> [Int] {
            var p = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, Int(next() % UInt64(i + 1))) }
            return p
        }
    }

    /// KLD means of `test` against `reference` ([rows, vocab] each), full and compact (top `k`), and the mean tail mass.
    static func klds(reference: [Float], test: [Float], rows: Int, vocab: Int, k: Int) throws -> (full: Double, compact: Double, tail: Double) {
        let ids = [Int32](repeating: 0, count: rows)
        let full = try LogitStatistics(ids: ids, sequences: rows, tokens: 1, reference: reference, test: test, vocab: vocab)
        var compact = CompactLogits(k: k, vocab: vocab)
        try compact.append(logits: reference, next: [Int32?](repeating: nil, count: rows), source: "reference")
        let c = try LogitStatistics(ids: ids, sequences: rows, tokens: 1, reference: compact, test: .values(test, vocab: vocab, label: "test"))
        let tail = compact.tailLogMass.reduce(0) { $0 + exp($1) } / Double(rows)
        return (full.kld.mean, c.kld.mean, tail)
    }

    @Test("the top K in order: largest first, ties to the lower id; the k-th largest by selection")
    func topOrder() throws {
        var c = CompactLogits(k: 3, vocab: 6)
        try c.append(logits: [1, 3, 3, 2, 0, 3], next: [1], source: "r")
        #expect(c.topIDs == [1, 2, 5] && c.topLogits == [3, 3, 3])
        var d = CompactLogits(k: 2, vocab: 6)
        try d.append(logits: [1, 3, 0, 2, 0, -1], next: [nil], source: "r")
        #expect(d.topIDs == [1, 3])
        let lse = log(exp(1.0) + exp(3.0) + 1 + exp(2.0) + 1 + exp(-1.0))
        #expect(abs(d.logSumExp[0] - lse) <= 1e-12)
        #expect(abs(exp(d.tailLogMass[0]) - (exp(1.0) + 1 + 1 + exp(-1.0)) / exp(lse)) <= 1e-12)
        #expect(d.nextLogProb[0].isNaN && abs(c.nextLogProb[0] - (3 - c.logSumExp[0])) <= 1e-12)
        // Selection agrees with sorting on random rows.
        var numbers = Numbers(state: 7)
        for _ in 0..<20 {
            let row = (0..<300).map { _ in Float((numbers.normal() * 4).rounded()) }
            var e = CompactLogits(k: 17, vocab: 300)
            try e.append(logits: row, next: [nil], source: "r")
            let sorted = (0..<300).sorted { row[$0] != row[$1] ? row[$0] > row[$1] : $0 < $1 }
            #expect(e.topIDs == sorted.prefix(17).map { Int32($0) })
        }
        #expect(CompactLogits.bytesPerPosition(k: CompactLogits.defaultK) * 50 <= 327_680)
    }

    @Test("the bucketed divergence never exceeds the full one; the gap is P_tail · KL(tail ‖ tail'), within its bound")
    func bound() throws {
        var numbers = Numbers(state: 11)
        let vocab = 512, k = 32
        for _ in 0..<10 {
            let reference = (0..<vocab).map { _ in Float(numbers.normal() * 3) }
            let test = reference.map { $0 + Float(numbers.normal() * 0.5) }
            let (full, compact, _) = try Self.klds(reference: reference, test: test, rows: 1, vocab: vocab, k: k)
            // The gap computed independently: P_tail · Σ_tail p̂ log(p̂ / q̂), and its bound P_tail · max |log(p̂ / q̂)|.
            let lp = Self.logSoftmax(reference), lq = Self.logSoftmax(test)
            let top = Set((0..<vocab).sorted { reference[$0] > reference[$1] }.prefix(k))
            let tail = (0..<vocab).filter { !top.contains($0) }
            let P = tail.reduce(0) { $0 + exp(lp[$1]) }, Q = tail.reduce(0) { $0 + exp(lq[$1]) }
            let gap = tail.reduce(0) { s, v in s + exp(lp[v]) * ((lp[v] - log(P)) - (lq[v] - log(Q))) }
            let bound = P * tail.map { abs((lp[$0] - log(P)) - (lq[$0] - log(Q))) }.max()!
            #expect(compact <= full + 1e-12)
            #expect(abs((full - compact) - gap) <= 1e-9 * full + 1e-12)
            #expect(full - compact <= bound + 1e-12)
        }
    }

    @Test("equal to the full divergence when the tails are proportional or K covers the vocabulary")
    func exactCases() throws {
        var numbers = Numbers(state: 5)
        let vocab = 400, k = 20
        let reference = (0..<vocab).map { _ in Float(numbers.normal() * 2) }
        let top = Set((0..<vocab).sorted { reference[$0] > reference[$1] }.prefix(k))
        // The head moves freely; the tail moves by one constant (its shape is kept).
        let test = (0..<vocab).map { top.contains($0) ? reference[$0] + Float(numbers.normal()) : reference[$0] - 0.75 }
        let proportional = try Self.klds(reference: reference, test: test, rows: 1, vocab: vocab, k: k)
        #expect(proportional.full > 1e-3)
        #expect(abs(proportional.full - proportional.compact) <= 1e-6 * proportional.full)
        let noisy = reference.map { $0 + Float(numbers.normal() * 0.3) }
        let covered = try Self.klds(reference: reference, test: noisy, rows: 1, vocab: vocab, k: vocab)
        #expect(abs(covered.full - covered.compact) <= 1e-12 + 1e-9 * covered.full)
    }

    /// A peaked distribution over K2.5's vocabulary (163,840): Zipf in a random token order, `log p ∝ −α log(1 + rank)`;
    /// the test adds normal noise of `sigma` to every logit (a quantization's kind of error).
    @Test("measured: relative KLD error at the default K on peaked synthetic distributions of K2.5's vocabulary")
    func peakedSynthetic() throws {
        let vocab = 163_840, k = CompactLogits.defaultK
        var numbers = Numbers(state: 3)
        for (alpha, sigma, allowed) in [(2.0, 0.3, 0.01), (3.0, 0.05, 0.001), (1.5, 0.3, 0.06)] {
            var reference: [Float] = [], test: [Float] = []
            let rows = 2
            for _ in 0..<rows {
                let ranks = numbers.permutation(vocab)
                let row = ranks.map { Float(-alpha * log1p(Double($0))) }
                reference += row
                test += row.map { $0 + Float(numbers.normal() * sigma) }
            }
            let (full, compact, tail) = try Self.klds(reference: reference, test: test, rows: rows, vocab: vocab, k: k)
            let relative = (full - compact) / full
            print("compact K=\(k) Zipf α=\(alpha) σ=\(sigma): tail mass \(tail), KLD full \(full), compact \(compact), relative error \(relative)")
            #expect(relative >= -1e-9 && relative <= allowed)
        }
    }

    static func logSoftmax(_ x: [Float]) -> [Double] {
        let m = Double(x.max()!)
        let s = log(x.reduce(0.0) { $0 + exp(Double($1) - m) })
        return x.map { Double($0) - m - s }
    }
}

@Suite("Compact reference files")
struct CompactFileTests {
    /// A compact dump of one window of 2 tokens, vocabulary 4, K = 2, with `edit` applied to its datasets.
    static func write(_ dir: TemporaryDirectory, _ name: String, edit: (inout [String: [Double]]) -> Void = { _ in }) throws -> String {
        var d: [String: [Double]] = [
            "topk_ids": [2, 0, 1, 3], "topk_logits": [3, 1, 2, 0.5],
            "logsumexp": [3.5, 2.8], "tail_logmass": [-2.5, -2.0], "next_logprob": [-0.4, .nan],
        ]
        edit(&d)
        let path = dir.path + "/" + name
        let file = try HDF5File.create(path)
        try file.write("input_ids", int32s: [1, 2], shape: [1, 2])
        try file.write("topk_ids", int32s: d["topk_ids"]!.map { Int32($0) }, shape: [1, 2, 2])
        try file.write("topk_logits", floats: d["topk_logits"]!.map { Float($0) }, shape: [1, 2, 2])
        for name in ["logsumexp", "tail_logmass", "next_logprob"] { try file.write(name, doubles: d[name]!, shape: [1, 2]) }
        return path
    }

    @Test("a well-formed compact file reads back")
    func good() throws {
        let dir = TemporaryDirectory()
        let c = try #require(try CompactLogits.read(ReferenceDump(spec: Self.write(dir, "good.h5")), vocab: 4))
        #expect(c.k == 2 && c.rows == 2 && c.topIDs == [2, 0, 1, 3] && c.nextLogProb[1].isNaN)
    }

    @Test("stored values that would make a meaningless statistic are refused by dataset and position", arguments: [
        ("topk_logits", 1, Double.nan, "topk_logits[0][0][1] is nan: stored logits must be finite"),
        ("topk_ids", 3, 1, "topk_ids[0][1] lists token 1 twice"),
        ("topk_ids", 0, 9, "topk_ids[0][0][0] = 9 is outside the vocabulary of 4"),
        ("logsumexp", 0, 2.5, "logsumexp[0][0] is 2.5, expected a finite value ≥ the largest stored logit 3.0"),
        ("logsumexp", 1, Double.infinity, "logsumexp[0][1] is inf, expected a finite value ≥ the largest stored logit 2.0"),
        ("tail_logmass", 0, 0.5, "tail_logmass[0][0] is 0.5, expected the log of a mass between 0 and 1 (≤ 0, or -inf)"),
        ("tail_logmass", 1, Double.nan, "tail_logmass[0][1] is nan, expected the log of a mass between 0 and 1 (≤ 0, or -inf)"),
        ("next_logprob", 0, 0.25, "next_logprob[0][0] is 0.25, expected a log-probability (≤ 0), or NaN at a window's last token"),
        ("next_logprob", 0, -Double.infinity, "next_logprob[0][0] is -inf, expected a log-probability (≤ 0), or NaN at a window's last token"),
    ])
    func refusals(_ dataset: String, _ index: Int, _ value: Double, _ message: String) throws {
        let dir = TemporaryDirectory()
        let path = try Self.write(dir, "bad.h5") { $0[dataset]![index] = value }
        let dump = try ReferenceDump(spec: path)
        #expect(throws: HDF5File.HDF5Error(path: path, reason: message)) { try CompactLogits.read(dump, vocab: 4) }
    }
}
