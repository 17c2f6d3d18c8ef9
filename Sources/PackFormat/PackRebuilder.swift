import FileIO
import Checkpoint
import Foundation
import TensorCore

/// Rebuilding a Hugging Face checkpoint from stored slices: one path for `export` (a k2pack folder: one whole
/// slice per source tensor) and `shard --merge` (a shard set: a merge of many ranks; export is a merge of one).
/// Every source shard is rebuilt from its verbatim header and, for each of its tensors in data order, the stored
/// slices that tile it; every stored tensor's xxHash64 is checked once, before any of its bytes are written.
/// Then the kept index and config.json and the carried files (each checked against its SHA-256). A failure
/// removes everything written (the output folder was new or empty).
public enum PackRebuilder {
    /// One source shard to rebuild: its verbatim header and, for each of the header's tensors in order, the
    /// stored slices that tile it (checked by the caller).
    public struct Shard: Sendable {
        public var name: String
        public var headerBytes: [UInt8]
        public var header: SafetensorsHeader
        public var pieces: [[StoredSlice]]

        public init(name: String, headerBytes: [UInt8], header: SafetensorsHeader, pieces: [[StoredSlice]]) {
            self.name = name
            self.headerBytes = headerBytes
            self.header = header
            self.pieces = pieces
        }
    }

    /// Makes the output folder (new or empty, never overlapping `input`) and writes the shards (in parallel;
    /// within one, tensors in the header's data order), then the kept records and the carried files.
    public static func rebuild(
        _ shards: [Shard], packs: [PackFile], input: String, output: String, sourceIndex: Bool, carried: [CarriedFile], threads: Int,
        counter: ProgressCounter
    ) throws {
        try OutputPaths.prepareFolder(output, inputs: [input], existing: .empty)
        let checked = ChecksumOnce()
        let results: [Result<Void, any Error>] = parallelMap(count: shards.count, width: threads) { i in
            Result {
                let shard = shards[i]
                let file = try AtomicFile(path: output + "/" + shard.name)
                try file.setLength(shard.header.describedLength)
                try file.write(shard.headerBytes, at: 0)
                counter.add(shard.headerBytes.count)
                for (entry, pieces) in zip(shard.header.tensors, shard.pieces) {
                    // The whole stored tensor's xxHash64 first (once); then the copy, in pieces of at most 64 MiB
                    // (mapped slices dropped once copied, or decompressed frames).
                    for p in pieces { try checked.check(p.file, packs[p.file], p.tensor) }
                    try write(pieces, of: entry, packs: packs, to: file)
                    counter.add(entry.byteCount)
                }
                try file.commit()
            }
        }
        do {
            for result in results { try result.get() }
            try PackFolderWriter.copyKeptRecords(from: input, sourceIndex: sourceIndex, to: output)
            try CarriedFiles.copy(carried, from: input, to: output)
        } catch {
            // Nothing half-way: what did finish goes too (the output folder was new or empty).
            WrittenOutput.remove(shards: shards.map(\.name), carried: carried.map(\.path), from: output)
            throw error
        }
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
