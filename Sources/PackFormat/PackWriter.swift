import Archive
import FileIO
import Foundation
import TensorCore

/// A tensor to be written: its name, type and shape, and the source slices whose bytes it concatenates.
public struct PlannedTensor: Sendable, Equatable {
    public var name: String
    public var dtype: DType
    public var shape: [Int]
    public var sources: [PackSource]
    public var length: Int { sources.reduce(0) { $0 + $1.length } }

    public init(name: String, dtype: DType, shape: [Int], sources: [PackSource]) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.sources = sources
    }
}

public enum PackWriter {
    /// Assigns offsets: the table first, then every tensor at the next multiple of the alignment.
    /// Checksums are placeholders of their final width, so the table's length is already exact.
    public static func layout(_ planned: [PlannedTensor]) throws -> (table: PackTable, dataOffset: Int, fileLength: Int) {
        var dataOffset = PackSpec.alignment * 2
        while true {
            var offset = dataOffset
            var tensors: [PackTensor] = []
            for p in planned {
                tensors.append(PackTensor(
                    name: p.name, dtype: p.dtype, shape: p.shape, offset: offset, length: p.length,
                    xxh64: String(repeating: "0", count: 16), sources: p.sources))
                offset = PackSpec.aligned(offset + p.length)
            }
            let table = PackTable(tensors: tensors)
            let needed = PackSpec.aligned(PackSpec.alignment + (try table.encoded()).count)
            if needed <= dataOffset {
                return (table, dataOffset, max(dataOffset, tensors.last.map { $0.offset + $0.length } ?? dataOffset))
            }
            dataOffset = needed
        }
    }

    /// Writes a k2pack file atomically. `read` returns the bytes of a source slice (a mapped view, valid during
    /// the call); `release` is told each range of a source once it is copied (so mapped pages can be dropped
    /// and memory stays bounded); `progress` is told how many bytes were copied; `beforeCommit` may still refuse
    /// the finished file (its sources changed while being read) before it is renamed into place.
    public static func write(
        path: String, tensors planned: [PlannedTensor],
        read: (PackSource) throws -> UnsafeRawBufferPointer,
        release: (PackSource, Range<Int>) -> Void = { _, _ in },
        progress: (Int) -> Void = { _ in },
        beforeCommit: () throws -> Void = {}
    ) throws -> PackTable {
        var (table, dataOffset, fileLength) = try layout(planned)
        let file = try AtomicFile(path: path)
        try file.setLength(fileLength)
        for (t, tensor) in table.tensors.enumerated() {
            var hash = XXHash64()
            var at = tensor.offset
            for source in tensor.sources {
                try pieces(of: source, read: read, release: release, progress: progress) { piece in
                    hash.update(piece)
                    try file.write(piece, at: at)
                    at += piece.count
                }
            }
            table.tensors[t].xxh64 = XXHash64.hex(hash.finalize())
        }
        let tableBytes = try table.encoded()
        precondition(PackSpec.alignment + tableBytes.count <= dataOffset, "table grew after checksums were filled in")
        try file.write(tableBytes, at: PackSpec.alignment)
        let flags = PackFlags.of(sources: planned.lazy.flatMap(\.sources), archive: false)
        try file.write(
            header(flags: flags, tableLength: tableBytes.count, tableHash: tableBytes.withUnsafeBytes { XXHash64.hash($0) }, dataOffset: dataOffset,
                   fileLength: fileLength), at: 0)
        try beforeCommit()
        try file.commit()
        return table
    }

    /// Writes a compressed archive file (`.k2z`) atomically: every source slice becomes one or more independent
    /// zstd frames of at most `PackSpec.maxFrameSize` bytes of content, so each source tensor can be read alone
    /// and a reader's memory is bounded by one frame. Checksums are over the uncompressed bytes.
    public static func writeArchive(
        path: String, tensors planned: [PlannedTensor], level: Int32,
        read: (PackSource) throws -> UnsafeRawBufferPointer,
        release: (PackSource, Range<Int>) -> Void = { _, _ in },
        progress: (Int) -> Void = { _ in },
        beforeCommit: () throws -> Void = {}
    ) throws -> PackTable {
        let file = try AtomicFile(path: path)
        var at = PackSpec.fixedHeaderSize
        var tensors: [PackTensor] = []
        for p in planned {
            var hash = XXHash64()
            var frames: [PackFrame] = []
            for source in p.sources {
                try pieces(of: source, read: read, release: release, progress: progress) { piece in
                    hash.update(piece)
                    let frame: [UInt8]
                    do { frame = try Zstd.compress(piece, level: level) } catch { throw PackError.sourceInvalid(reason: "\(displayed(source.name)): \(error)") }
                    try file.write(frame, at: at)
                    frames.append(PackFrame(offset: at, length: frame.count, size: piece.count))
                    at += frame.count
                }
            }
            tensors.append(PackTensor(
                name: p.name, dtype: p.dtype, shape: p.shape, offset: frames.first?.offset ?? at, length: p.length,
                xxh64: XXHash64.hex(hash.finalize()), sources: p.sources, frames: frames))
        }
        let table = PackTable(tensors: tensors, compression: "zstd")
        let tableBytes = try table.encoded()
        try file.write(tableBytes, at: at)
        try file.write(
            header(magic: PackSpec.archiveMagic, flags: PackFlags.of(sources: planned.lazy.flatMap(\.sources), archive: true), tableOffset: at, tableLength: tableBytes.count,
                   tableHash: tableBytes.withUnsafeBytes { XXHash64.hash($0) }, dataOffset: PackSpec.fixedHeaderSize,
                   fileLength: at + tableBytes.count), at: 0)
        try beforeCommit()
        try file.commit()
        return table
    }

    /// Hands `body` a source's bytes in pieces of at most `PackSpec.maxFrameSize`, releasing each afterwards.
    /// `read` returns the source's whole span; a sliced source's runs are gathered into pieces (so a rank's
    /// share of a row-split matrix is copied in large writes, not one per row).
    static func pieces(
        of source: PackSource, read: (PackSource) throws -> UnsafeRawBufferPointer, release: (PackSource, Range<Int>) -> Void,
        progress: (Int) -> Void, _ body: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let bytes = try read(source)
        guard let span = source.span, bytes.count == span else {
            throw PackError.sourceInvalid(reason: "\(displayed(source.shard)): '\(displayed(source.name))' gave \(bytes.count) bytes, expected \(source.span ?? -1)")
        }
        let run = source.runLength
        guard let slice = source.slice, slice.runs > 1, run > 0, run < PackSpec.maxFrameSize else {
            // Contiguous, or runs so long that each is copied on its own.
            for r in 0..<(source.slice?.runs ?? 1) {
                let start = r * (source.slice?.stride ?? 0)
                try ChunkedCopy.pieces(of: UnsafeRawBufferPointer(rebasing: bytes[start..<(start + run)]), pieceBytes: PackSpec.maxFrameSize, release: {
                    release(source, (start + $0.lowerBound)..<(start + $0.upperBound))
                    progress($0.count)
                }, body)
            }
            return
        }
        // Bounded both in bytes gathered and in source bytes spanned (mapped pages are dropped after each piece).
        let perPiece = max(1, min(gatherSize / run, gatherSize / max(slice.stride, 1)))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: perPiece * run, alignment: 64)
        defer { buffer.deallocate() }
        var first = 0
        while first < slice.runs {
            let count = min(perPiece, slice.runs - first)
            for r in 0..<count {
                let from = (first + r) * slice.stride
                (buffer.baseAddress! + r * run).copyMemory(from: bytes.baseAddress! + from, byteCount: run)
            }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<(count * run)]))
            release(source, (first * slice.stride)..<((first + count - 1) * slice.stride + run))
            progress(count * run)
            first += count
        }
    }

    /// Bytes gathered from a sliced source before each write.
    static let gatherSize = 16 << 20

    static func header(
        magic: [UInt8] = PackSpec.magic, flags: PackFlags, tableOffset: Int = PackSpec.alignment, tableLength: Int, tableHash: UInt64, dataOffset: Int,
        fileLength: Int
    ) -> [UInt8] {
        var bytes = magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        put(PackSpec.version)
        put(flags.rawValue)
        put(UInt64(PackSpec.alignment))
        put(UInt64(tableOffset))
        put(UInt64(tableLength))
        put(UInt64(dataOffset))
        put(UInt64(fileLength))
        put(tableHash)
        return bytes
    }
}
