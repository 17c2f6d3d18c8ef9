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
    /// and memory stays bounded); `progress` is told how many bytes were copied.
    public static func write(
        path: String, tensors planned: [PlannedTensor],
        read: (PackSource) throws -> UnsafeRawBufferPointer,
        release: (PackSource, Range<Int>) -> Void = { _, _ in },
        progress: (Int) -> Void = { _ in }
    ) throws -> PackTable {
        var (table, dataOffset, fileLength) = try layout(planned)
        let file = try AtomicFile(path: path)
        try file.setLength(fileLength)
        let chunk = 64 << 20
        for (t, tensor) in table.tensors.enumerated() {
            var hash = XXHash64()
            var at = tensor.offset
            for source in tensor.sources {
                let bytes = try read(source)
                guard bytes.count == source.length else {
                    throw PackError.sourceInvalid(reason: "\(source.shard): '\(source.name)' gave \(bytes.count) bytes, expected \(source.length)")
                }
                var offset = 0
                while offset < bytes.count {
                    let piece = UnsafeRawBufferPointer(rebasing: bytes[offset..<min(bytes.count, offset + chunk)])
                    hash.update(piece)
                    try file.write(piece, at: at)
                    release(source, offset..<(offset + piece.count))
                    at += piece.count
                    offset += piece.count
                    progress(piece.count)
                }
            }
            table.tensors[t].xxh64 = XXHash64.hex(hash.finalize())
        }
        let tableBytes = try table.encoded()
        precondition(PackSpec.alignment + tableBytes.count <= dataOffset, "table grew after checksums were filled in")
        try file.write(tableBytes, at: PackSpec.alignment)
        try file.write(header(tableLength: tableBytes.count, tableHash: tableBytes.withUnsafeBytes { XXHash64.hash($0) }, dataOffset: dataOffset, fileLength: fileLength), at: 0)
        try file.commit()
        return table
    }

    static func header(tableLength: Int, tableHash: UInt64, dataOffset: Int, fileLength: Int) -> [UInt8] {
        var bytes = PackSpec.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
        put(PackSpec.version)
        put(UInt32(0))
        put(UInt64(PackSpec.alignment))
        put(UInt64(PackSpec.alignment))
        put(UInt64(tableLength))
        put(UInt64(dataOffset))
        put(UInt64(fileLength))
        put(tableHash)
        return bytes
    }
}
