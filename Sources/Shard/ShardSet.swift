import Forward
import Foundation
import ModelConfig
import ModelStore
import Inspection
import PackFormat
import Repack
import TensorCore

/// A written shard set, opened for the forward pass: one pass per rank over its own folder.
public enum ShardSet {
    public static func open(folder: String, dequant: Dequantization = .exact, threads: Int = ProcessInfo.processInfo.activeProcessorCount) throws
        -> ShardedForward
    {
        let set = try ShardSetManifest.read(folder: folder)
        let manifests = try set.rankManifests(folder: folder)
        let passes = try manifests.enumerated().map { r, manifest -> ForwardPass in
            let rankFolder = folder + "/" + ShardSetManifest.rankFolder(r)
            let store = try PackTensorStore(folder: rankFolder, asRank: true)
            let record = manifest.shard!  // rankManifests checked it
            guard record.experts.count == 2, record.experts[0] >= 0, record.experts[0] <= record.experts[1] else {
                throw ShardError.input("\(displayed(rankFolder))/\(PackManifest.fileName): experts \(record.experts) is not a range [first, end)")
            }
            let blocks = try checkedBlocks(store, layout: set.layout, tpRank: record.tpRank, folder: rankFolder)
            let partition = WeightPartition(
                tp: record.tp, ep: record.ep, tpRank: record.tpRank, epRank: record.epRank,
                experts: record.experts[0]..<record.experts[1], blocks: blocks)
            let weights = try ModelWeights(config: store.config, store: store, dequant: dequant, partition: partition)
            return ForwardPass(weights: weights, threads: threads)
        }
        return try ShardedForward(ranks: passes)
    }

    /// The blocks a rank's tables say it holds, each checked to be exactly what the manifest's rules give this
    /// rank (a table is untrusted: a block on the wrong dimension or out of range is refused, not computed with).
    static func checkedBlocks(_ store: PackTensorStore, layout: ShardLayout, tpRank: Int, folder: String) throws -> [String: WeightPartition.Block] {
        let expected: ExpectedTensorList
        do { expected = try ExpectedTensorList(config: store.config) } catch { throw ShardError.input("\(displayed(folder)): \(error)") }
        var blocks: [String: WeightPartition.Block] = [:]
        for t in expected.tensors {
            guard let dtype = store.dtype(of: t.name) else { continue }  // held by another rank
            let want = try ShardPlan.blocks(name: t.name, shape: t.shape, dtype: dtype, expected: t, layout: layout)?[tpRank]
            let have = store.blocks[t.name]
            guard want?.dimension == have?.dimension, want?.range.lowerBound == have?.start, want?.range.upperBound == have?.end else {
                func text(_ d: Int?, _ a: Int?, _ b: Int?) -> String { d.map { "[\(a ?? 0), \(b ?? 0)) of dimension \($0)" } ?? "the whole tensor" }
                throw ShardError.input(
                    "\(displayed(folder)): '\(displayed(t.name))' is stored as \(text(have?.dimension, have?.start, have?.end)); the rules give tp rank \(tpRank) \(text(want?.dimension, want?.range.lowerBound, want?.range.upperBound))")
            }
            if let want { blocks[t.name] = WeightPartition.Block(dimension: want.dimension, start: want.range.lowerBound, end: want.range.upperBound) }
        }
        if let stray = store.blocks.keys.first(where: { blocks[$0] == nil }) {
            throw ShardError.input("\(displayed(folder)): '\(displayed(stray))' is stored as a block, but the rules give no tensor of that name a block")
        }
        return blocks
    }
}

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
            do { _ = try ShardMerger.assemble(input: folder) } catch {
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
