import Foundation
import TensorCore

/// Quant verification in the manner of llama-perplexity's KL-divergence report: test logits against reference
/// logits at every position. Logits stay float32; log-probabilities are computed in float64.
public struct LogitStatistics: Codable, Sendable {
    /// Mean ± standard error, extremes and percentiles (linear interpolation between order statistics).
    public struct Summary: Codable, Sendable, Equatable {
        public var mean: Double
        public var stderr: Double
        public var max: Double
        public var min: Double
        public var percentiles: [String: Double]
        public var rms: Double?
    }

    public static let percentileLevels: [Double] = [99.9, 99, 95, 90, 50, 10, 5, 1, 0.1]

    public var positions: Int
    /// Positions that have a next token (all but each sequence's last): Δp and perplexity use these.
    public var nextTokenPositions: Int
    public var kld: Summary
    /// p_test(next) − p_ref(next).
    public var deltaP: Summary
    public var sameTop1: Double
    /// Mean of |top5(ref) ∩ top5(test)| / 5.
    public var top5Overlap: Double
    public var perplexityReference: Double
    public var perplexityTest: Double
    /// A compact reference only (`CompactLogits`): its K and the mean probability outside its top K, about the
    /// relative amount by which the bucketed KLD under-reports the full one.
    public var referenceTopK: Int?
    public var referenceTailMass: Double?

    enum CodingKeys: String, CodingKey {
        case positions, nextTokenPositions = "next_token_positions", kld, deltaP = "delta_p", sameTop1 = "same_top1"
        case top5Overlap = "top5_overlap", perplexityReference = "ppl_ref", perplexityTest = "ppl_test"
        case referenceTopK = "ref_top_k", referenceTailMass = "ref_tail_mass"
    }

    /// The report from the per-position tallies both forms of the reference collect (full logits, or the compact
    /// top-K form): KLD per position, Δp and log-likelihoods at each next token, same top-1 and top-5 counts.
    init(tallied rows: Int, klds: [Double], deltas: [Double], sameTop1: Int, overlap: Int, nllRef: Double, nllTest: Double) {
        positions = rows
        nextTokenPositions = deltas.count
        kld = Self.summary(klds)
        deltaP = Self.summary(deltas)
        deltaP.rms = deltas.isEmpty ? 0 : (deltas.reduce(0) { $0 + $1 * $1 } / Double(deltas.count)).squareRoot()
        self.sameTop1 = rows == 0 ? 0 : Double(sameTop1) / Double(rows)
        top5Overlap = rows == 0 ? 0 : Double(overlap) / Double(5 * rows)
        perplexityReference = deltas.isEmpty ? .nan : Foundation.exp(nllRef / Double(deltas.count))
        perplexityTest = deltas.isEmpty ? .nan : Foundation.exp(nllTest / Double(deltas.count))
    }

    /// Where logits come from, read a block of rows at a time (rows are `b·T + t`): a dump's dataset read in
    /// row blocks, or our own forward pass's logits in memory.
    public struct Source {
        /// For messages: `ref.h5:/exact logits`.
        public var label: String
        public var rows: (Range<Int>) throws -> [Float]

        public init(label: String, rows: @escaping (Range<Int>) throws -> [Float]) {
            self.label = label
            self.rows = rows
        }

        /// Logits held in memory, [rows, vocab].
        public static func values(_ values: [Float], vocab: Int, label: String) -> Source {
            Source(label: label) { range in Array(values[(range.lowerBound * vocab)..<(range.upperBound * vocab)]) }
        }
    }

    /// Logits that no statistic can be computed from, named by source and position.
    public enum LogitError: Error, Equatable, CustomStringConvertible {
        case nonFinite(source: String, sequence: Int, token: Int, index: Int, value: Float)
        case emptyVocabulary(source: String)
        case wrongBlock(source: String, rows: Range<Int>, found: Int, expected: Int)

        public var description: String {
            switch self {
            case let .nonFinite(source, sequence, token, index, value):
                "\(displayed(source))[\(sequence)][\(token)][\(index)] is \(value): logits must be finite for KL divergence and perplexity"
            case let .emptyVocabulary(source): "\(displayed(source)) has a vocabulary of 0 (its last dimension is empty): nothing to compare"
            case let .wrongBlock(source, rows, found, expected):
                "\(displayed(source)): rows \(rows.lowerBound)..<\(rows.upperBound) came back with \(found) values, expected \(expected)"
            }
        }
    }

    /// Largest block read from each source at once (floats): 64 MiB.
    public static let blockElements = 1 << 24

    /// `ids` [B, T], logits [B, T, V] each, in memory.
    public init(ids: [Int32], sequences: Int, tokens: Int, reference: [Float], test: [Float], vocab: Int) throws {
        precondition(reference.count == test.count && reference.count == sequences * tokens * vocab && ids.count == sequences * tokens,
                     "LogitStatistics: shapes do not match")
        try self.init(
            ids: ids, sequences: sequences, tokens: tokens, vocab: vocab,
            reference: .values(reference, vocab: vocab, label: "reference logits"), test: .values(test, vocab: vocab, label: "test logits"))
    }

    /// `ids` [B, T]; each source gives logits [B·T, V] a block of rows at a time, so memory stays at one block per
    /// source whatever the dump's size. Every logit must be finite (the first that is not is named); log-softmax is
    /// `(x − max) − log Σ exp(x − max)` in float64, so huge logits (3e38) give exact, non-negative divergences.
    public init(ids: [Int32], sequences: Int, tokens: Int, vocab: Int, reference: Source, test: Source, blockElements: Int = Self.blockElements) throws {
        precondition(ids.count == sequences * tokens, "LogitStatistics: ids do not match [sequences, tokens]")
        guard vocab > 0 else { throw LogitError.emptyVocabulary(source: reference.label) }
        let rows = sequences * tokens
        var klds = [Double](repeating: 0, count: rows)
        var deltas: [Double] = []
        var nllRef = 0.0, nllTest = 0.0
        var sameTop1 = 0, overlap = 0
        var lr = [Double](repeating: 0, count: vocab), lt = lr
        let blockRows = Swift.max(1, blockElements / vocab)
        var first = 0
        while first < rows {
            let range = first..<Swift.min(rows, first + blockRows)
            let refBlock = try reference.rows(range), testBlock = try test.rows(range)
            for (block, source) in [(refBlock, reference), (testBlock, test)] {
                guard block.count == range.count * vocab else {
                    throw LogitError.wrongBlock(source: source.label, rows: range, found: block.count, expected: range.count * vocab)
                }
                if let bad = block.firstIndex(where: { !$0.isFinite }) {
                    let r = range.lowerBound + bad / vocab
                    throw LogitError.nonFinite(source: source.label, sequence: r / tokens, token: r % tokens, index: bad % vocab, value: block[bad])
                }
            }
            refBlock.withUnsafeBufferPointer { refAll in
                testBlock.withUnsafeBufferPointer { testAll in
                    for local in 0..<range.count {
                        let r = range.lowerBound + local
                        let ref = UnsafeBufferPointer(rebasing: refAll[(local * vocab)..<((local + 1) * vocab)])
                        let tst = UnsafeBufferPointer(rebasing: testAll[(local * vocab)..<((local + 1) * vocab)])
                        Self.logSoftmax(ref, into: &lr)
                        Self.logSoftmax(tst, into: &lt)
                        var kl = 0.0
                        for v in 0..<vocab { kl += Foundation.exp(lr[v]) * (lr[v] - lt[v]) }
                        klds[r] = kl
                        if Self.argmax(ref) == Self.argmax(tst) { sameTop1 += 1 }
                        overlap += Set(Self.top(ref, 5)).intersection(Self.top(tst, 5)).count
                        let t = r % tokens
                        if t + 1 < tokens {
                            let next = Int(ids[r + 1])
                            if next >= 0 && next < vocab {
                                deltas.append(Foundation.exp(lt[next]) - Foundation.exp(lr[next]))
                                nllRef -= lr[next]
                                nllTest -= lt[next]
                            }
                        }
                    }
                }
            }
            first = range.upperBound
        }
        self.init(tallied: rows, klds: klds, deltas: deltas, sameTop1: sameTop1, overlap: overlap, nllRef: nllRef, nllTest: nllTest)
    }

    /// `(x − m) − log Σ exp(x − m)` in float64: subtracting the maximum first keeps `log Σ` from vanishing into a
    /// huge `m` (logits of 3e38 would otherwise give unnormalised log-probabilities and a negative KL).
    static func logSoftmax(_ x: UnsafeBufferPointer<Float>, into out: inout [Double]) {
        var m = -Double.infinity
        for v in x { m = Swift.max(m, Double(v)) }
        var sum = 0.0
        for v in x { sum += Foundation.exp(Double(v) - m) }
        let logSum = Foundation.log(sum)
        for i in 0..<x.count { out[i] = (Double(x[i]) - m) - logSum }
    }

    static func argmax(_ x: UnsafeBufferPointer<Float>) -> Int {
        var best = 0
        for i in 1..<Swift.max(x.count, 1) where x[i] > x[best] { best = i }
        return best
    }

    /// Indices of the `k` largest values (ties: lower index first).
    static func top(_ x: UnsafeBufferPointer<Float>, _ k: Int) -> [Int] {
        var best: [Int] = []
        for i in 0..<x.count {
            if best.count == k, x[i] <= x[best[k - 1]] { continue }
            var at = best.count
            while at > 0, x[best[at - 1]] < x[i] { at -= 1 }
            best.insert(i, at: at)
            if best.count > k { best.removeLast() }
        }
        return best
    }

    static func summary(_ values: [Double]) -> Summary {
        guard !values.isEmpty else { return Summary(mean: .nan, stderr: .nan, max: .nan, min: .nan, percentiles: [:], rms: nil) }
        let n = Double(values.count)
        let mean = values.reduce(0, +) / n
        let variance = values.count > 1 ? values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / (n - 1) : 0
        let sorted = values.sorted()
        var percentiles: [String: Double] = [:]
        for p in percentileLevels {
            let position = p / 100 * (n - 1)
            let lo = Int(position.rounded(.down)), hi = Swift.min(lo + 1, sorted.count - 1)
            percentiles[Self.label(p)] = sorted[lo] + (sorted[hi] - sorted[lo]) * (position - Double(lo))
        }
        return Summary(mean: mean, stderr: (variance / n).squareRoot(), max: sorted.last!, min: sorted.first!, percentiles: percentiles, rms: nil)
    }

    /// "p99.9", "p50", "p0.1".
    public static func label(_ p: Double) -> String {
        p == p.rounded() ? "p\(Int(p))" : "p\(p)"
    }

    /// Fraction of rows whose argmax agrees.
    public static func top1Agreement(_ a: [Float], _ b: [Float], vocab: Int) -> Double {
        let rows = a.count / Swift.max(vocab, 1)
        guard rows > 0 else { return 1 }
        var same = 0
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                for r in 0..<rows where argmax(UnsafeBufferPointer(rebasing: pa[(r * vocab)..<((r + 1) * vocab)]))
                    == argmax(UnsafeBufferPointer(rebasing: pb[(r * vocab)..<((r + 1) * vocab)])) { same += 1 }
            }
        }
        return Double(same) / Double(rows)
    }
}
