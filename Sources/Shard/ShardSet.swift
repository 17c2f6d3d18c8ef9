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
                throw ShardError.input("\(displayed(rankFolder))/\(PackManifest.fileName): experts \(record.experts) is not a range [first, end)")
            }
            // The rank's expected tensor list, built once: for its blocks' check and for its weights.
            let expected: ExpectedTensorList
            do { expected = try ExpectedTensorList(config: store.config) } catch { throw ShardError.input("\(displayed(rankFolder)): \(error)") }
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
                throw ShardError.input(
                    "\(displayed(folder)): '\(displayed(t.name))' is stored as \(text(have?.dimension, have?.start, have?.end)); the rules give tp rank \(tpRank) \(text(want?.dimension, want?.range.lowerBound, want?.range.upperBound))")
            }
            if let want { blocks[t.name] = ManifestWeightSource.Block(dimension: want.dimension, start: want.range.lowerBound, end: want.range.upperBound) }
        }
        if let stray = store.blocks.keys.first(where: { blocks[$0] == nil }) {
            throw ShardError.input("\(displayed(folder)): '\(displayed(stray))' is stored as a block, but the rules give no tensor of that name a block")
        }
        return blocks
    }
}
