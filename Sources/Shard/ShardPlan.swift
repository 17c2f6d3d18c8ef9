import Checkpoint
import LoadedModel
import ModelConfig
import PackFormat
import TensorCore

/// Which part of every tensor each rank holds, from the architecture manifest's `tp` / `tp_unit` / `ep` rules
/// (never from names or sizes in code):
/// - `column` / `vocab`: dimension 0 split in `tp` equal blocks (of whole `tp_unit`s, e.g. heads);
/// - `row`: dimension 1 split likewise (for INT4, in whole quantization groups);
/// - `replicate`: every rank;
/// - routed experts (`ep`): whole experts in `ep` contiguous blocks; with `ep` = 1 they are split by their
///   `tp` rule instead.
public struct ShardPlan: Sendable, Encodable {
    /// One tensor's share on one rank: the whole tensor, or `range` along `dimension`.
    public struct Piece: Sendable, Codable, Equatable {
        public var tensor: String
        public var dimension: Int?
        public var range: [Int]?
        public var bytes: Int
    }

    public struct Rank: Sendable, Codable {
        public var rank: Int
        public var tpRank: Int
        public var epRank: Int
        public var tensors: Int
        public var bytes: Int
        /// The routed experts it holds, `[first, end)`.
        public var experts: [Int]?
    }

    public var layout: ShardLayout
    public var checkpointBytes: Int
    public var ranks: [Rank]
    /// Largest rank's bytes over the smallest's.
    public var balance: Double
    public var pieces: [[Piece]]
    /// Routed experts per expert group.
    public var expertsPerGroup: Int

    enum CodingKeys: String, CodingKey, CaseIterable { case layout, checkpointBytes = "checkpoint_bytes", ranks, balance }

    public init(_ checkpoint: LoadedCheckpoint, layout: ShardLayout) throws {
        guard layout.tp >= 1, layout.ep >= 1, layout.ranks <= ShardLayout.maxRanks else {
            throw ShardError.implausibleLayout(tp: layout.tp, ep: layout.ep)
        }
        guard let config = checkpoint.config, checkpoint.expected != nil else { throw ShardError.noUsableConfig }
        let text = config.text
        if layout.ep > 1 {
            guard text.numRoutedExperts > 0, text.numRoutedExperts % layout.ep == 0 else {
                throw ShardError.expertsIndivisible(experts: text.numRoutedExperts, ep: layout.ep)
            }
        }
        let perGroup = layout.ep > 1 ? text.numRoutedExperts / layout.ep : text.numRoutedExperts
        var pieces = [[Piece]](repeating: [], count: layout.ranks)
        var total = 0
        let dir = checkpoint.directory
        for (s, shard) in dir.shards.enumerated() {
            guard let shard else { continue }
            for (e, entry) in shard.tensors.enumerated() {
                total += entry.byteCount
                let expected = checkpoint.expected(shard: s, entry: e)
                var ranks = Array(0..<layout.ranks)
                if let expected, expected.expertParallel, let expert = expected.expert, layout.ep > 1 {
                    let group = expert / perGroup
                    ranks = (0..<layout.tp).map { group * layout.tp + $0 }
                }
                if expected?.vision == true, !layout.visionOnEveryRank { ranks = [0] }
                let blocks = try Self.blocks(name: entry.name, shape: entry.shape, dtype: entry.dtype, expected: expected, layout: layout)
                for r in ranks {
                    let block = blocks?[r % layout.tp]
                    pieces[r].append(Piece(
                        tensor: entry.name, dimension: block?.dimension, range: block.map { [$0.range.lowerBound, $0.range.upperBound] },
                        bytes: block == nil ? entry.byteCount : entry.byteCount / layout.tp))
                }
            }
        }
        self.layout = layout
        expertsPerGroup = perGroup
        checkpointBytes = total
        self.pieces = pieces
        ranks = pieces.enumerated().map { r, list in
            Rank(rank: r, tpRank: r % layout.tp, epRank: r / layout.tp, tensors: list.count, bytes: list.reduce(0) { $0 + $1.bytes },
                 experts: [(r / layout.tp) * perGroup, (r / layout.tp + 1) * perGroup])
        }
        let sizes = ranks.map(\.bytes)
        balance = Double(sizes.max() ?? 0) / Double(max(sizes.min() ?? 1, 1))
    }

    /// The block each tensor-parallel rank holds of a tensor (nil: every rank holds it whole), by the manifest's
    /// rule for it: routed experts stay whole when expert groups hold them, `weight_shape` always does. Throws
    /// when the tensor cannot be split evenly in whole units (heads, quantization groups, FP8 blocks, bytes).
    public static func blocks(name: String, shape: [Int], dtype: DType, expected: ExpectedTensor?, layout: ShardLayout) throws
        -> [(dimension: Int, range: Range<Int>)]?
    {
        let tp = layout.tp
        guard tp > 1, let expected, expected.form != .shape, !(expected.expertParallel && layout.ep > 1) else { return nil }
        let dimension: Int
        switch expected.tp {
        case .replicate: return nil
        case .column, .vocab: dimension = 0
        case .row: dimension = 1
        }
        guard dimension < shape.count else {
            throw ShardError.indivisible(tensor: name, reason: "its \(shape.count)-D shape has no dimension \(dimension) to split")
        }
        guard dtype.bitWidth % 8 == 0 else {
            throw ShardError.indivisible(tensor: name, reason: "its \(dtype.rawValue) elements are not whole bytes")
        }
        let size = shape[dimension]
        // The unit a split must respect: heads (tp_unit); for INT4 along the input, whole groups; an FP8 block
        // scale follows its weight, which must split in whole blocks.
        var units = expected.tpUnit ?? size
        var blockRows = 1
        switch expected.method {
        case let .packQuantized(_, group, _)? where dimension == 1:
            if let logical = expected.logicalShape { units = min(units, logical[1] / max(group, 1)) }
        case let .fp8Block(br, bc)?:
            if expected.form == .blockScale { units = size } else { blockRows = dimension == 0 ? br : bc }
        default: break
        }
        guard units > 0, units % tp == 0, size % units == 0, (size / tp) % max(blockRows, 1) == 0 else {
            throw ShardError.indivisible(
                tensor: name,
                reason: "dimension \(dimension) (\(size)) holds \(units) indivisible unit\(units == 1 ? "" : "s") (heads, quantization groups or rows)\(blockRows > 1 ? " in FP8 blocks of \(blockRows)" : ""), not a multiple of tp \(tp)")
        }
        let share = size / tp
        return (0..<tp).map { (dimension, ($0 * share)..<(($0 + 1) * share)) }
    }

    /// The plan as text: bytes per rank, balance, and what each rank holds.
    public func renderText() -> String {
        var out = "shard plan: \(layout.ranks) ranks = tp \(layout.tp) × ep \(layout.ep), \(formatBytes(checkpointBytes)) of tensors\n"
        for r in ranks {
            let experts = layout.ep > 1 ? r.experts.map { "experts \($0[0])..<\($0[1])" } ?? "" : (layout.tp > 1 ? "experts split by their tp rule" : "all experts")
            out += "  rank \(String(r.rank).leftPadded(3))  tp \(r.tpRank) ep \(r.epRank)  \(formatBytes(r.bytes).leftPadded(12))  \(String(r.tensors).leftPadded(7)) tensors  \(experts)\n"
        }
        out += String(format: "balance: largest / smallest rank = %.3f\n", balance)
        return out
    }
}
