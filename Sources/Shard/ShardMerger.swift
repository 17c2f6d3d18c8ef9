import Checkpoint
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
        var shards: [(name: String, headerBytes: [UInt8], header: SafetensorsHeader, pieces: [[StoredSlice]])]
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
        var shards: [(name: String, headerBytes: [UInt8], header: SafetensorsHeader, pieces: [[StoredSlice]])] = []
        for shard in set.sourceShards {
            let (bytes, header) = try PackManifest.sourceHeader(folder: input, shard: shard)
            let pieces = try header.tensors.map { entry in
                try tiling(of: entry, shard: shard, slices: slices.remove(entry.name))
            }
            shards.append((shard, bytes, header, pieces))
        }
        if let (name, extra) = slices.slices.min(by: { $0.key < $1.key }) {
            throw ShardError.input("\(displayed(packs[extra[0].file].name)): stores '\(displayed(name.string))', which no source header lists")
        }
        return Assembly(set: set, ranks: manifests.count, packs: packs, shards: shards)
    }

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
        try OutputPaths.prepareFolder(output, inputs: [input], existing: .empty)
        let counter = ProgressCounter(total: assembly.tensorBytes, report: progress)
        let checked = ChecksumOnce()
        // Output shards in parallel; within one, tensors in the header's data order.
        let results: [Result<Void, any Error>] = parallelMap(count: assembly.shards.count, width: threads) { i in
            Result {
                let shard = assembly.shards[i]
                let file = try AtomicFile(path: output + "/" + shard.name)
                try file.setLength(shard.header.describedLength)
                try file.write(shard.headerBytes, at: 0)
                counter.add(shard.headerBytes.count)
                for (entry, pieces) in zip(shard.header.tensors, shard.pieces) {
                    for p in pieces { try checked.check(p.file, assembly.packs[p.file], p.tensor) }
                    try write(pieces, of: entry, packs: assembly.packs, to: file)
                    counter.add(entry.byteCount)
                }
                try file.commit()
            }
        }
        do {
            for result in results { try result.get() }
            try PackFolderWriter.copyKeptRecords(from: input, sourceIndex: assembly.set.sourceIndex, to: output)
            try CarriedFiles.copy(assembly.set.carried, from: input, to: output)
        } catch {
            // Nothing half-way: what did finish goes too (the output folder was new or empty).
            WrittenOutput.remove(shards: assembly.shards.map(\.name), carried: assembly.set.carried.map(\.path), from: output)
            throw error
        }
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

    /// Writes a tiled tensor into its place in the output shard: contiguous pieces as they are; blocks along an
    /// inner dimension by gathering whole source rows (every piece's run of each row) before each write.
    static func write(_ pieces: [StoredSlice], of entry: TensorEntry, packs: [PackFile], to file: AtomicFile) throws {
        if pieces.allSatisfy({ ($0.source.slice?.runs ?? 1) == 1 }) {
            for p in pieces { try packs[p.file].copySource(p.tensor, p.index, to: file, at: p.source.offset) }
            return
        }
        let slice = pieces[0].source.slice!
        let rows = slice.runs, rowBytes = slice.stride
        let perBlock = (16 << 20) / max(rowBytes, 1)
        guard perBlock > 0 else {
            // Rows longer than the gather buffer: each run goes straight to its place.
            for p in pieces {
                let run = p.source.runLength
                var r = 0
                try packs[p.file].readSource(p.tensor, p.index) { bytes in
                    var at = 0
                    while at < bytes.count {
                        let row = r / max(run, 1), offset = r % max(run, 1)
                        let count = min(bytes.count - at, run - offset)
                        try file.write(UnsafeRawBufferPointer(rebasing: bytes[at..<(at + count)]), at: p.source.offset + row * rowBytes + offset)
                        at += count
                        r += count
                    }
                }
            }
            return
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(rows, perBlock) * rowBytes, alignment: 64)
        defer { buffer.deallocate() }
        let mapped = try pieces.map { p -> (bytes: UnsafeRawBufferPointer, file: ReadOnlyFile, at: Int) in
            let pack = packs[p.file], range = p.range
            return (UnsafeRawBufferPointer(rebasing: try pack.file.mapped()[range]), pack.file, range.lowerBound)
        }
        var first = 0
        while first < rows {
            let count = min(perBlock, rows - first)
            for (p, m) in zip(pieces, mapped) {
                let run = p.source.runLength, into = p.source.offset - entry.rangeInFile.lowerBound
                for r in 0..<count {
                    (buffer.baseAddress! + r * rowBytes + into).copyMemory(from: m.bytes.baseAddress! + (first + r) * run, byteCount: run)
                }
                m.file.adviseDone((m.at + first * run)..<(m.at + (first + count) * run))
            }
            try file.write(UnsafeRawBufferPointer(rebasing: buffer[0..<(count * rowBytes)]), at: entry.rangeInFile.lowerBound + first * rowBytes)
            first += count
        }
    }
}
