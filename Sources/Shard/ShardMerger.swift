import Checkpoint
import FileIO
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import JSONCore
import PackFormat
import TensorCore

/// `k2pack shard --merge`: a shard set → the Hugging Face checkpoint it was cut from, byte for byte.
///
/// Every source shard is rebuilt from its verbatim header; each of its tensors from the ranks' slices of it,
/// which must tile it exactly (blocks of one dimension, in order, with the byte geometry their shape implies).
/// A tensor held by several ranks (replicated, or an expert group on each of its tensor-parallel ranks) is taken
/// once, and its copies must agree.
public enum ShardMerger {
    public struct Report: Sendable, Codable {
        public var files: [String]
        public var bytes: Int
        public var ranks: Int
        public var seconds: Double
    }

    /// A shard set checked for merging: its packs, and for every source shard its verbatim header and, for each
    /// of the header's tensors in order, the stored slices that tile it.
    struct Assembly: @unchecked Sendable {
        var set: ShardSetManifest
        var ranks: Int
        var packs: [PackFile]
        var shards: [PackRebuilder.Shard]
        var tensorBytes: Int { shards.reduce(0) { $0 + $1.header.describedLength } }
    }

    /// Opens every rank, checks that copies held by several ranks agree and that the slices tile every source
    /// tensor exactly with nothing left over. Reads tables, not tensor data.
    static func assemble(input: String) throws -> Assembly {
        let set = try ShardSetManifest.read(folder: input)
        let manifests = try set.rankManifests(folder: input)
        var packs: [PackFile] = []
        var slices = PackSliceIndex()
        var copies: [[PackSource]: (rank: Int, xxh64: String)] = [:]
        for (r, manifest) in manifests.enumerated() {
            let folder = ShardSetManifest.rankFolder(r)
            for name in manifest.files {
                let pack = try PackFile(folder: input, name: folder + "/" + name)
                if pack.isArchive { throw ShardError.input("\(displayed(pack.name)): a shard set holds uncompressed k2pack files only") }
                packs.append(pack)
                for tensor in pack.table.tensors {
                    // A copy held by several ranks: the same slices, so it must be the same bytes.
                    if let first = copies[tensor.sources] {
                        guard first.xxh64 == tensor.xxh64 else {
                            throw ShardError.input("\(displayed(pack.name)): '\(displayed(tensor.name))' differs from rank \(first.rank)'s copy (xxHash64 \(tensor.xxh64) vs \(first.xxh64))")
                        }
                        continue
                    }
                    copies[tensor.sources] = (r, tensor.xxh64)
                    slices.add(tensor, file: packs.count - 1)
                }
            }
        }
        var shards: [PackRebuilder.Shard] = []
        for shard in set.sourceShards {
            let (bytes, header) = try PackManifest.sourceHeader(folder: input, shard: shard)
            let pieces = try header.tensors.map { entry in
                try tiling(of: entry, shard: shard, slices: slices.remove(entry.name))
            }
            shards.append(PackRebuilder.Shard(name: shard, headerBytes: bytes, header: header, pieces: pieces))
        }
        if let (name, extra) = slices.slices.min(by: { $0.key < $1.key }) {
            throw ShardError.input("\(displayed(packs[extra[0].file].name)): stores '\(displayed(name.string))', which no source header lists")
        }
        return Assembly(set: set, ranks: manifests.count, packs: packs, shards: shards)
    }

    /// Every check `merge` makes before writing (the set assembled: copies agreeing, slices tiling every source
    /// tensor exactly, nothing left over), for `verify` of a set.
    public static func check(input: String) throws { _ = try assemble(input: input) }

    /// What `merge` would write, with every check `merge` makes first (the whole set assembled; the output
    /// folder, when given, checked as merge would check it), writing nothing: `shard --merge --dry-run`.
    public static func plan(input: String, output: String?) throws -> Report {
        let assembly = try assemble(input: input)
        if let output { try OutputPaths.checkFolder(output, inputs: [input]) }
        return Report(files: assembly.set.sourceShards, bytes: assembly.tensorBytes, ranks: assembly.ranks, seconds: 0)
    }

    public static func merge(
        input: String, output: String, threads: Int = ProcessInfo.processInfo.activeProcessorCount,
        progress: (@Sendable (Int, Int) -> Void)? = nil
    ) throws -> Report {
        let start = Date()
        let assembly = try assemble(input: input)
        try PackRebuilder.rebuild(
            assembly.shards, packs: assembly.packs, input: input, output: output, sourceIndex: assembly.set.sourceIndex, carried: assembly.set.carried,
            threads: threads, counter: ProgressCounter(total: assembly.tensorBytes, report: progress))
        return Report(files: assembly.set.sourceShards, bytes: assembly.tensorBytes, ranks: assembly.ranks, seconds: Date().timeIntervalSince(start))
    }

    /// The stored slices of `entry`, in order, once they are shown to tile it exactly: one whole copy, or the
    /// blocks `[0, a), [a, b), …, [z, size)` of one dimension, each where its shape puts it in the source.
    static func tiling(of entry: TensorEntry, shard: String, slices: [StoredSlice]) throws -> [StoredSlice] {
        func fail(_ reason: String) -> ShardError { .input("\(displayed(shard)): tensor '\(displayed(entry.name))': \(reason)") }
        guard !slices.isEmpty else { throw fail("no rank stores it") }
        let start = entry.rangeInFile.lowerBound
        if slices.count == 1, slices[0].source.slice == nil {
            let s = slices[0].source
            guard s.shard == shard, s.offset == start, s.length == entry.byteCount else {
                throw fail("the stored copy is \(s.length) bytes at \(displayed(s.shard)) offset \(s.offset), the header needs \(entry.byteCount) at \(start)")
            }
            return slices
        }
        let sorted = slices.sorted { ($0.source.slice?.start ?? -1) < ($1.source.slice?.start ?? -1) }
        guard let dimension = sorted[0].source.slice?.dimension, dimension < entry.shape.count else {
            throw fail("its \(slices.count) stored pieces are not blocks of one dimension")
        }
        let total = sorted.reduce(Optional(0)) { sum, p in sum.flatMap { CheckedMath.add($0, p.source.length) } }
        guard entry.dtype.bitWidth % 8 == 0, total == entry.byteCount else {
            throw fail("its \(slices.count) stored pieces do not add up to its \(entry.byteCount) bytes")
        }
        var next = 0
        for piece in sorted {
            let s = piece.source
            guard let slice = s.slice, slice.dimension == dimension, slice.start == next, s.shard == shard,
                let g = PackSlice.geometry(
                    shape: entry.shape, elementBytes: entry.dtype.bitWidth / 8, dimension: dimension, start: slice.start, end: slice.end),
                slice.end > slice.start, g.runs == slice.runs, g.stride == slice.stride, CheckedMath.add(start, g.offset) == s.offset,
                CheckedMath.multiply(g.runs, g.runLength) == s.length
            else {
                throw fail("the pieces along dimension \(dimension) do not tile it (a piece at \(s.slice.map { "[\($0.start), \($0.end))" } ?? "whole") where [\(next), …) was due, or with the wrong byte geometry)")
            }
            next = slice.end
        }
        guard next == entry.shape[dimension] else {
            throw fail("the pieces cover [0, \(next)) of dimension \(dimension), which has \(entry.shape[dimension])")
        }
        return sorted
    }
}

extension ShardMerger {
    /// Checks that a shard set's slices tile every source tensor exactly (what `verify` reports as
    /// `shard_coverage`, and what a merge needs). Reads tables, not tensor data.
    public static func checkCoverage(input: String) throws { _ = try assemble(input: input) }
}
