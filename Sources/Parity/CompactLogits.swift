import Foundation
import TensorCore

/// The compact form of reference logits (docs/REFERENCE-DUMPS.md, "Compact form"): per position the `K` largest
/// logits (float32, exactly as the full form would store them) with their token ids, the log-normalizer
/// `log Σ_v exp(x_v)` and the log of the probability mass outside the top `K` (float64 each), and the
/// log-probability of the next token (float64; NaN at each window's last position). Log-probabilities of the
/// stored tokens are `x_i − logsumexp` in float64, as `LogitStatistics` computes them from the full form.
/// At `K = 800` a position takes 800 × 8 + 24 = 6,424 bytes, 1/51 of llama.cpp's 327,680 (16-bit log-probs of
/// a 163,840-token vocabulary).
public struct CompactLogits: Sendable {
    /// Default entries kept per position (6,424 bytes per position, ≤ 1/50 of 327,680).
    public static let defaultK = 800
    /// Fewest entries kept: `compare`'s top-5 overlap needs five.
    public static let minimumK = 5

    public let k: Int
    public let vocab: Int
    /// `[rows, k]`, largest logit first (ties: lower token id first).
    public private(set) var topIDs: [Int32] = []
    public private(set) var topLogits: [Float] = []
    /// `[rows]`.
    public private(set) var logSumExp: [Double] = []
    public private(set) var tailLogMass: [Double] = []
    public private(set) var nextLogProb: [Double] = []
    public var rows: Int { logSumExp.count }

    /// `k` is clamped to the vocabulary (then the form is exact: no tail).
    public init(k: Int, vocab: Int) {
        self.k = min(max(k, 1), vocab)
        self.vocab = vocab
    }

    /// Appends `[rows, vocab]` logits; `next[r]` is the token that follows row r (nil at a window's end).
    /// `source` names the logits in the error for a non-finite value.
    public mutating func append(logits: [Float], next: [Int32?], source: String, firstRow: Int = 0, tokens: Int = 1) throws(LogitStatistics.LogitError) {
        precondition(logits.count == next.count * vocab, "CompactLogits: logits do not match the rows")
        var inside = [Bool](repeating: false, count: k < vocab ? vocab : 0)
        try logits.withUnsafeBufferPointer { (all) throws(LogitStatistics.LogitError) in
            for r in 0..<next.count {
                let row = UnsafeBufferPointer(rebasing: all[(r * vocab)..<((r + 1) * vocab)])
                if let bad = row.firstIndex(where: { !$0.isFinite }) {
                    let at = firstRow + r
                    throw .nonFinite(source: source, sequence: at / tokens, token: at % tokens, index: bad, value: row[bad])
                }
                let lse = LogProbs.logSumExp(row)
                let top = Self.top(row, k)
                var tail = 0.0
                if k < vocab {
                    for id in top { inside[Int(id)] = true }
                    for v in 0..<vocab where !inside[v] { tail += Foundation.exp(Double(row[v]) - lse) }
                    for id in top { inside[Int(id)] = false }
                }
                topIDs += top
                for id in top { topLogits.append(row[Int(id)]) }
                logSumExp.append(lse)
                tailLogMass.append(tail > 0 ? Foundation.log(tail) : -.infinity)
                if let n = next[r], n >= 0, Int(n) < vocab {
                    nextLogProb.append(Double(row[Int(n)]) - lse)
                } else {
                    nextLogProb.append(.nan)
                }
            }
        }
    }

    /// The indices of the `k` largest values, largest first, ties to the lower index (`LogitStatistics.top`'s order):
    /// the k-th largest value found by selection, then the values above it and the first ties at it.
    static func top(_ row: UnsafeBufferPointer<Float>, _ k: Int) -> [Int32] {
        let n = row.count
        guard k < n else {
            return (0..<n).map { Int32($0) }.sorted { row[Int($0)] != row[Int($1)] ? row[Int($0)] > row[Int($1)] : $0 < $1 }
        }
        var values = Array(row)
        let threshold = Self.kthLargest(&values, k)
        var chosen: [Int32] = []
        chosen.reserveCapacity(k)
        for i in 0..<n where row[i] > threshold { chosen.append(Int32(i)) }
        for i in 0..<n where chosen.count < k && row[i] == threshold { chosen.append(Int32(i)) }
        return chosen.sorted { row[Int($0)] != row[Int($1)] ? row[Int($0)] > row[Int($1)] : $0 < $1 }
    }

    /// The k-th largest of `values` (1-based), reordering them (quickselect, median-of-three pivots).
    static func kthLargest(_ values: inout [Float], _ k: Int) -> Float {
        var lo = 0, hi = values.count - 1
        let target = k - 1
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            let a = values[lo], b = values[mid], c = values[hi]
            let pivot = max(min(a, b), min(max(a, b), c))
            var i = lo, j = hi
            while i <= j {
                while values[i] > pivot { i += 1 }
                while values[j] < pivot { j -= 1 }
                if i <= j {
                    values.swapAt(i, j)
                    i += 1
                    j -= 1
                }
            }
            if target <= j { hi = j } else if target >= i { lo = i } else { return values[target] }
        }
        return values[target]
    }

    /// Parts of one reference (`logits --rank R --world N`) as one, rows in part order; their K and vocabulary
    /// must agree.
    public static func joined(_ parts: [CompactLogits]) throws(HDF5File.HDF5Error) -> CompactLogits {
        guard var out = parts.first else { throw HDF5File.HDF5Error(path: "compare", reason: "no compact reference parts") }
        for part in parts.dropFirst() {
            guard part.k == out.k, part.vocab == out.vocab else {
                throw HDF5File.HDF5Error(path: "compare", reason: "reference parts keep K = \(out.k) and K = \(part.k) tokens per position: make every part with the same --top-k")
            }
            out.topIDs += part.topIDs
            out.topLogits += part.topLogits
            out.logSumExp += part.logSumExp
            out.tailLogMass += part.tailLogMass
            out.nextLogProb += part.nextLogProb
        }
        return out
    }

    /// Bytes per position in the file: k × (4 + 4) + 3 × 8.
    public static func bytesPerPosition(k: Int) -> Int { k * 8 + 24 }

    /// Dataset names under the dump's group.
    public enum Dataset {
        public static let topIDs = "topk_ids"
        public static let topLogits = "topk_logits"
        public static let logSumExp = "logsumexp"
        public static let tailLogMass = "tail_logmass"
        public static let nextLogProb = "next_logprob"
    }

    /// Writes the datasets under `group` ("" for the root) for `windows × tokens` positions.
    public func write(to file: HDF5File, group: String, windows: Int, tokens: Int) throws(HDF5File.HDF5Error) {
        precondition(rows == windows * tokens, "CompactLogits: rows do not match the windows")
        let prefix = group.isEmpty ? "" : group + "/"
        try file.write(prefix + Dataset.topIDs, int32s: topIDs, shape: [windows, tokens, k])
        try file.write(prefix + Dataset.topLogits, floats: topLogits, shape: [windows, tokens, k])
        try file.write(prefix + Dataset.logSumExp, doubles: logSumExp, shape: [windows, tokens])
        try file.write(prefix + Dataset.tailLogMass, doubles: tailLogMass, shape: [windows, tokens])
        try file.write(prefix + Dataset.nextLogProb, doubles: nextLogProb, shape: [windows, tokens])
    }

    /// Reads the compact form of `dump` (nil when it has none), checked against its `input_ids` and `vocab`.
    public static func read(_ dump: ReferenceDump, vocab: Int) throws(HDF5File.HDF5Error) -> CompactLogits? {
        guard dump.has(Dataset.topIDs) else { return nil }
        let windows = dump.batch.sequences, tokens = dump.batch.tokens
        let shape = try dump.relabel { () throws(HDF5File.HDF5Error) in try dump.file.shape(dump.group + "/" + Dataset.topIDs) }
        guard shape.count == 3, shape[0] == windows, shape[1] == tokens, shape[2] >= 1, shape[2] <= vocab else {
            throw HDF5File.HDF5Error(path: dump.label, reason: "\(Dataset.topIDs) has shape \(shape), expected [\(windows), \(tokens), K] with 1 ≤ K ≤ the vocabulary of \(vocab)")
        }
        let k = shape[2]
        var out = CompactLogits(k: k, vocab: vocab)
        func floats(_ name: String, _ expected: [Int]) throws(HDF5File.HDF5Error) -> [Float] {
            try dump.relabel { () throws(HDF5File.HDF5Error) in
                try dump.file.readFloats(dump.group + "/" + name, expected: expected, maxElements: ReferenceDump.maxElements) { found in
                    "\(name) has shape \(found), expected \(expected)"
                }
            }
        }
        func doubles(_ name: String) throws(HDF5File.HDF5Error) -> [Double] {
            try dump.relabel { () throws(HDF5File.HDF5Error) in
                try dump.file.readDoubles(dump.group + "/" + name, expected: [windows, tokens], maxElements: ReferenceDump.maxElements) { found in
                    "\(name) has shape \(found), expected \([windows, tokens])"
                }
            }
        }
        let ids = try dump.relabel { () throws(HDF5File.HDF5Error) in
            try dump.file.readInt64s(dump.group + "/" + Dataset.topIDs, expected: [windows, tokens, k], maxElements: ReferenceDump.maxElements)
        }
        if let bad = ids.firstIndex(where: { $0 < 0 || $0 >= Int64(vocab) }) {
            throw HDF5File.HDF5Error(path: dump.label, reason: "\(Dataset.topIDs)[\(bad / k / tokens)][\(bad / k % tokens)][\(bad % k)] = \(ids[bad]) is outside the vocabulary of \(vocab)")
        }
        out.topIDs = ids.map { Int32($0) }
        out.topLogits = try floats(Dataset.topLogits, [windows, tokens, k])
        out.logSumExp = try doubles(Dataset.logSumExp)
        out.tailLogMass = try doubles(Dataset.tailLogMass)
        out.nextLogProb = try doubles(Dataset.nextLogProb)
        if let problem = out.inconsistency(tokens: tokens) {
            throw HDF5File.HDF5Error(path: dump.label, reason: problem)
        }
        return out
    }

    /// What makes stored values meaningless, named by dataset and `[window][token]`, or nil: a top-K logit that is
    /// not finite, a token listed twice in one position, a log-normalizer that is not finite or is below the
    /// largest stored logit, a tail log-mass that is NaN or above 0 (a mass over 1), a next-token log-probability
    /// that is infinite or above 0 (NaN marks a window's last position).
    func inconsistency(tokens: Int) -> String? {
        func at(_ r: Int) -> String { "[\(r / tokens)][\(r % tokens)]" }
        // A float64 log of a mass of at most 1, computed in float64: above 0 only by rounding.
        let slack = 1e-9
        var seen = Set<Int32>()
        for r in 0..<rows {
            let row = (r * k)..<((r + 1) * k)
            if let bad = row.first(where: { !topLogits[$0].isFinite }) {
                return "\(Dataset.topLogits)\(at(r))[\(bad - row.lowerBound)] is \(topLogits[bad]): stored logits must be finite"
            }
            seen.removeAll(keepingCapacity: true)
            for i in row where !seen.insert(topIDs[i]).inserted {
                return "\(Dataset.topIDs)\(at(r)) lists token \(topIDs[i]) twice"
            }
            let largest = row.map { Double(topLogits[$0]) }.max() ?? -.infinity
            guard logSumExp[r].isFinite, logSumExp[r] >= largest - slack else {
                return "\(Dataset.logSumExp)\(at(r)) is \(logSumExp[r]), expected a finite value ≥ the largest stored logit \(largest)"
            }
            guard !tailLogMass[r].isNaN, tailLogMass[r] <= slack else {
                return "\(Dataset.tailLogMass)\(at(r)) is \(tailLogMass[r]), expected the log of a mass between 0 and 1 (≤ 0, or -inf)"
            }
            guard nextLogProb[r].isNaN || (nextLogProb[r].isFinite && nextLogProb[r] <= slack) else {
                return "\(Dataset.nextLogProb)\(at(r)) is \(nextLogProb[r]), expected a log-probability (≤ 0), or NaN at a window's last token"
            }
        }
        return nil
    }
}

/// Log-probabilities from float32 logits, in float64 (as `LogitStatistics` computes them).
public enum LogProbs {
    /// `m + log Σ exp(x − m)`, m the largest logit.
    public static func logSumExp(_ x: UnsafeBufferPointer<Float>) -> Double {
        var m = -Double.infinity
        for v in x { m = Swift.max(m, Double(v)) }
        var sum = 0.0
        for v in x { sum += Foundation.exp(Double(v) - m) }
        return m + Foundation.log(sum)
    }
}

extension LogitStatistics {
    /// The statistics of `test` against a compact reference: the KL divergence over the reference's top `K`
    /// tokens and one bucket for the rest, `Σ_top p (log p − log q) + P_tail (log P_tail − log Q_tail)`, which is
    /// never more than the full divergence (merging outcomes cannot increase it) and equals it when the two tails
    /// are proportional or `K` covers the vocabulary. Δp and the reference perplexity use the stored next-token
    /// log-probabilities; top-1 and top-5 use the stored order.
    public init(ids: [Int32], sequences: Int, tokens: Int, reference: CompactLogits, test: Source, blockElements: Int = Self.blockElements) throws {
        let vocab = reference.vocab, k = reference.k
        precondition(ids.count == sequences * tokens && reference.rows == ids.count, "LogitStatistics: shapes do not match")
        let rows = sequences * tokens
        var klds = [Double](repeating: 0, count: rows)
        var deltas: [Double] = []
        var nllRef = 0.0, nllTest = 0.0
        var sameTop1 = 0, overlap = 0
        var lt = [Double](repeating: 0, count: vocab)
        var inside = [Bool](repeating: false, count: vocab)
        let blockRows = Swift.max(1, blockElements / vocab)
        var first = 0
        while first < rows {
            let range = first..<Swift.min(rows, first + blockRows)
            let block = try test.rows(range)
            guard block.count == range.count * vocab else {
                throw LogitError.wrongBlock(source: test.label, rows: range, found: block.count, expected: range.count * vocab)
            }
            if let bad = block.firstIndex(where: { !$0.isFinite }) {
                let r = range.lowerBound + bad / vocab
                throw LogitError.nonFinite(source: test.label, sequence: r / tokens, token: r % tokens, index: bad % vocab, value: block[bad])
            }
            try block.withUnsafeBufferPointer { all in
                for local in 0..<range.count {
                    let r = range.lowerBound + local
                    let tst = UnsafeBufferPointer(rebasing: all[(local * vocab)..<((local + 1) * vocab)])
                    Self.logSoftmax(tst, into: &lt)
                    let top = reference.topIDs[(r * k)..<((r + 1) * k)]
                    let lse = reference.logSumExp[r]
                    var kl = 0.0
                    for (i, id) in top.enumerated() {
                        let lp = Double(reference.topLogits[r * k + i]) - lse
                        kl += Foundation.exp(lp) * (lp - lt[Int(id)])
                        inside[Int(id)] = true
                    }
                    let tail = reference.tailLogMass[r]
                    if tail > -.infinity {
                        var q = 0.0
                        for v in 0..<vocab where !inside[v] { q += Foundation.exp(lt[v]) }
                        kl += Foundation.exp(tail) * (tail - Foundation.log(q))
                    }
                    for id in top { inside[Int(id)] = false }
                    klds[r] = kl
                    let testTop = Self.top(tst, Swift.min(5, vocab))
                    if Int(top[top.startIndex]) == testTop.first { sameTop1 += 1 }
                    overlap += Set(top.prefix(5).map { Int($0) }).intersection(testTop).count
                    if r % tokens + 1 < tokens {
                        let next = Int(ids[r + 1])
                        let lr = reference.nextLogProb[r]
                        guard lr.isFinite else {
                            throw LogitError.nonFinite(source: "reference next_logprob", sequence: r / tokens, token: r % tokens, index: next, value: Float(lr))
                        }
                        if next >= 0 && next < vocab {
                            deltas.append(Foundation.exp(lt[next]) - Foundation.exp(lr))
                            nllRef -= lr
                            nllTest -= lt[next]
                        }
                    }
                }
            }
            first = range.upperBound
        }
        self.init(tallied: rows, klds: klds, deltas: deltas, sameTop1: sameTop1, overlap: overlap, nllRef: nllRef, nllTest: nllTest)
        referenceTopK = k
        referenceTailMass = rows == 0 ? 0 : reference.tailLogMass.reduce(0) { $0 + Foundation.exp($1) } / Double(rows)
    }
}
