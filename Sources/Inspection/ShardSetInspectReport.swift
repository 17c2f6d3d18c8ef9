import Foundation
import PackFormat
import Repack
import TensorCore

public struct ShardSetInspectReport: Sendable, Codable {
    public var path: String
    public var format = "k2pack-shards"
    public var architecture: String
    public var layout: ShardLayout
    public var sourceShards: Int
    public var ranks: [PackInspectReport]

    public init(folder: String) throws {
        let set = try ShardSetManifest.read(folder: folder)
        _ = try set.rankManifests(folder: folder)
        path = folder
        architecture = set.architecture
        layout = set.layout
        sourceShards = set.sourceShards.count
        ranks = try (0..<set.layout.ranks).map { try PackInspectReport(folder: folder + "/" + ShardSetManifest.rankFolder($0)) }
    }

    public func renderText() -> String {
        let total = ranks.reduce(0) { $0 + $1.tensorBytes }
        var out = "shard set      \(displayed(path))\n"
        out += "architecture   \(displayed(architecture))\n"
        out += "layout         \(layout.ranks) ranks = tp \(layout.tp) × ep \(layout.ep); vision tower on \(layout.visionOnEveryRank ? "every rank" : "rank 0")\n"
        out += "bytes          \(formatBytes(total)) of tensors over all ranks; \(sourceShards) source headers kept for --merge\n\n"
        for r in ranks {
            guard let s = r.shard else { continue }
            out += "rank-\(String(format: "%04d", s.rank))  tp \(s.tpRank) ep \(s.epRank)  \(String(r.files.count).leftPadded(4)) files  "
                + "\(String(r.tensorCount).leftPadded(7)) tensors  \(formatBytes(r.tensorBytes).leftPadded(12))  experts \(s.experts.map(String.init).joined(separator: "..<"))\n"
        }
        return out
    }
}
