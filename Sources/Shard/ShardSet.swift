import Forward
import Foundation
import ModelConfig
import ModelStore
import PackFormat
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
                throw ShardError.expertsNotRange(rankFolder: rankFolder, experts: record.experts)
            }
            // The rank's expected tensor list, built once: for its blocks' check and for its weights.
            let expected: ExpectedTensorList
            do throws(ConfigError) { expected = try ExpectedTensorList(config: store.config) } catch { throw ShardError.rankConfig(rankFolder: rankFolder, error: error) }
            let blocks = try checkedBlocks(store, expected: expected, layout: set.layout, tpRank: record.tpRank, folder: rankFolder)
            let partition = WeightPartition(
                tp: record.tp, ep: record.ep, tpRank: record.tpRank, epRank: record.epRank, experts: record.experts[0]..<record.experts[1])
            let weights = try ManifestWeightSource(
                config: store.config, expected: expected, store: store, dequant: dequant, partition: partition, blocks: blocks)
            return ForwardPass(weights: weights, threads: threads)
        }
        return try ShardedForward(ranks: passes)
    }

    /// The blocks a rank's tables say it holds, each checked to be exactly what the manifest's rules give this
    /// rank (a table is untrusted: a block on the wrong dimension or out of range is refused, not computed with).
    static func checkedBlocks(
        _ store: PackTensorStore, expected: ExpectedTensorList, layout: ShardLayout, tpRank: Int, folder: String
    ) throws -> [String: ManifestWeightSource.Block] {
        var blocks: [String: ManifestWeightSource.Block] = [:]
        for t in expected.tensors {
            guard let dtype = store.dtype(of: t.name) else { continue }  // held by another rank
            let want = try ShardPlan.blocks(name: t.name, shape: t.shape, dtype: dtype, expected: t, layout: layout)?[tpRank]
            let have = store.blocks[t.name]
            guard want?.dimension == have?.dimension, want?.range.lowerBound == have?.start, want?.range.upperBound == have?.end else {
                func text(_ d: Int?, _ a: Int?, _ b: Int?) -> String { d.map { "[\(a ?? 0), \(b ?? 0)) of dimension \($0)" } ?? "the whole tensor" }
                throw ShardError.blockMismatch(
                    folder: folder, tensor: t.name, tpRank: tpRank, stored: text(have?.dimension, have?.start, have?.end),
                    rules: text(want?.dimension, want?.range.lowerBound, want?.range.upperBound))
            }
            if let want { blocks[t.name] = ManifestWeightSource.Block(dimension: want.dimension, start: want.range.lowerBound, end: want.range.upperBound) }
        }
        if let stray = store.blocks.keys.first(where: { blocks[$0] == nil }) {
            throw ShardError.strayBlock(folder: folder, tensor: stray)
        }
        return blocks
    }
}
