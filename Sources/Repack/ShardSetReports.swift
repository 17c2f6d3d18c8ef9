import Foundation
import Inspection
import PackFormat
import Shard
import TensorCore

/// `k2pack verify` on a shard set: every rank's files and checksums, copies held by several ranks agreeing, and
/// the slices tiling every source tensor exactly (what `--merge` needs).
public enum ShardVerifier {
    public static func verify(folder: String, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                              progress: (@Sendable (Int, Int) -> Void)? = nil) throws -> VerifyReport {
        let start = Date()
        let set = try ShardSetManifest.read(folder: folder)
        var findings: [Finding] = []
        var files = 0, tensors = 0, bytes = 0
        for r in 0..<set.layout.ranks {
            let rankFolder = ShardSetManifest.rankFolder(r)
            do {
                let report = try PackVerifier.verify(folder: folder + "/" + rankFolder, threads: threads)
                files += report.shardCount
                tensors += report.tensorCount
                bytes += report.bytesScanned
                findings += report.findings.map { f in
                    var f = f
                    f.file = f.file.map { rankFolder + "/" + $0 }
                    if f.code == "carried_file" { f.message = rankFolder + "/" + f.message }
                    return f
                }
            } catch {
                findings.append(Finding(code: "shard_rank", file: rankFolder, message: "\(displayed(rankFolder)): \(error)"))
            }
            progress?(r + 1, set.layout.ranks)
        }
        // The set's config.json and kept source headers: the tensors the config implies, with their shapes and
        // dtypes, and nothing else (the ranks' slices are then checked to tile them).
        findings += PackVerifier.keptHeaders(folder: folder, sourceShards: set.sourceShards, architecture: set.architecture).findings
        if findings.isEmpty {
            do { try ShardMerger.check(input: folder) } catch {
                findings.append(Finding(code: "shard_coverage", message: "\(error)"))
            }
        }
        // The set's own copy of the carried files (each rank's is checked with the rank).
        findings += PackVerifier.carriedFindings(set.carried, in: folder)
        var report = VerifyReport(
            path: folder, architecture: set.architecture, shardCount: files, tensorCount: tensors, bytesScanned: bytes,
            seconds: Date().timeIntervalSince(start), findings: findings)
        report.format = "k2pack-shards"
        return report
    }
}

/// What `k2pack inspect` reports about a shard set: its layout and each rank's files, bytes and experts.
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
