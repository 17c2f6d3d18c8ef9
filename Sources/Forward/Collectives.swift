/// How the ranks of a sharded model combine their partial results: the collectives a deployment runs between
/// its devices after each parallel block. `ShardedForward` runs every rank in this process and combines their
/// results through `InProcessCollectives`; the same two operations over a network would run the ranks apart.
public protocol Collectives: Sendable {
    /// All-reduce: the element-wise sum of the ranks' partial results, added in rank order (so the result does
    /// not depend on timing).
    func allReduce(_ partials: [[Float]]) throws(ForwardError) -> [Float]
    /// All-gather of column blocks: rank r's `[rows, width_r]` block goes to columns `first_r ..< first_r + width_r`
    /// of the `[rows, columns]` result.
    func allGather(_ blocks: [(first: Int, values: [Float])], rows: Int, columns: Int) throws(ForwardError) -> [Float]
}

/// The collectives of ranks that all live in this process.
public struct InProcessCollectives: Collectives {
    public init() {}

    public func allReduce(_ partials: [[Float]]) throws(ForwardError) -> [Float] {
        guard var sum = partials.first else { return [] }
        for part in partials.dropFirst() {
            guard part.count == sum.count else { throw .input("ranks' partial results differ in size (\(part.count) vs \(sum.count))") }
            for i in 0..<sum.count { sum[i] += part[i] }
        }
        return sum
    }

    public func allGather(_ blocks: [(first: Int, values: [Float])], rows: Int, columns: Int) throws(ForwardError) -> [Float] {
        var out = [Float](repeating: 0, count: rows * columns)
        for (first, part) in blocks {
            let width = part.count / max(rows, 1)
            guard first >= 0, first + width <= columns else {
                throw .input("a rank's block of columns [\(first), \(first + width)) runs past the \(columns) columns")
            }
            for r in 0..<rows {
                for j in 0..<width { out[r * columns + first + j] = part[r * width + j] }
            }
        }
        return out
    }
}
