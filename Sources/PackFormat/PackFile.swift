import Checkpoint
import Foundation
import TensorCore

/// A k2pack file opened for reading: header and table validated, data mapped on demand.
public final class PackFile: Sendable {
    public let name: String
    public let table: PackTable
    public let file: ReadOnlyFile

    public init(path: String, name: String? = nil) throws(PackError) {
        let name = name ?? URL(fileURLWithPath: path).lastPathComponent
        self.name = name
        do {
            file = try ReadOnlyFile(path: path)
        } catch {
            throw .io(path: path, operation: "open", reason: error.description)
        }
        table = try Self.readTable(file, name: name)
    }

    static func readTable(_ file: ReadOnlyFile, name: String) throws(PackError) -> PackTable {
        guard file.byteCount >= PackSpec.fixedHeaderSize else {
            throw .notPack(file: name, reason: "\(file.byteCount) bytes is shorter than the \(PackSpec.fixedHeaderSize)-byte header")
        }
        let header: [UInt8]
        do { header = try file.read(count: PackSpec.fixedHeaderSize, at: 0) } catch { throw .io(path: name, operation: "read", reason: error.description) }
        guard Array(header[0..<8]) == PackSpec.magic else { throw .notPack(file: name, reason: "wrong magic bytes") }
        func u64(_ at: Int) -> UInt64 { header.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) } }
        let version = header.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        guard version == PackSpec.version else { throw .unsupportedVersion(file: name, version: version) }
        let alignment = u64(16), tableOffset = u64(24), tableLength = u64(32), dataOffset = u64(40), fileLength = u64(48)
        let tableHash = u64(56)
        guard alignment >= 64, alignment <= 1 << 30, alignment & (alignment - 1) == 0 else {
            throw .headerInvalid(file: name, reason: "alignment \(alignment) is not a power of two between 64 and 2^30")
        }
        guard fileLength == UInt64(file.byteCount) else {
            throw .headerInvalid(file: name, reason: "header records \(fileLength) bytes but the file has \(file.byteCount) (truncated or extended)")
        }
        guard tableLength <= UInt64(PackSpec.maxTableLength), tableOffset >= UInt64(PackSpec.fixedHeaderSize),
            tableOffset + tableLength <= dataOffset, dataOffset <= fileLength
        else {
            throw .headerInvalid(file: name, reason: "table [\(tableOffset), +\(tableLength)) and data offset \(dataOffset) do not fit a \(fileLength)-byte file")
        }
        let tableBytes: [UInt8]
        do { tableBytes = try file.read(count: Int(tableLength), at: Int(tableOffset)) } catch { throw .io(path: name, operation: "read", reason: error.description) }
        let actual = tableBytes.withUnsafeBytes { XXHash64.hash($0) }
        guard actual == tableHash else { throw .tableChecksum(file: name, expected: XXHash64.hex(tableHash), actual: XXHash64.hex(actual)) }
        let table: PackTable
        do {
            table = try JSONDecoder().decode(PackTable.self, from: Data(tableBytes))
        } catch {
            throw .tableInvalid(file: name, reason: "\(error)")
        }
        // Every tensor: aligned, inside the data area, sized by its shape, not overlapping the next.
        var end = Int(dataOffset)
        for t in table.tensors.sorted(by: { $0.offset < $1.offset }) {
            guard let bytes = CheckedMath.byteCount(shape: t.shape, dtype: t.dtype), bytes == t.length else {
                throw .tensorInvalid(file: name, tensor: t.name, reason: "length \(t.length) does not match shape \(formatShape(t.shape)) \(t.dtype.rawValue)")
            }
            guard t.offset % Int(alignment) == 0, t.offset >= end, let stop = CheckedMath.add(t.offset, t.length), stop <= file.byteCount else {
                throw .tensorInvalid(file: name, tensor: t.name, reason: "data [\(t.offset), +\(t.length)) is misaligned, overlaps the previous tensor or runs past the file")
            }
            guard t.sources.reduce(0, { $0 + $1.length }) == t.length else {
                throw .tensorInvalid(file: name, tensor: t.name, reason: "its source slices do not add up to its length")
            }
            end = stop
        }
        return table
    }

    /// A tensor's bytes (a view of the mapping, valid while this object lives).
    public func bytes(of tensor: PackTensor) throws(PackError) -> UnsafeRawBufferPointer {
        do {
            let whole = try file.mapped()
            return UnsafeRawBufferPointer(rebasing: whole[tensor.offset..<(tensor.offset + tensor.length)])
        } catch {
            throw .io(path: name, operation: "map", reason: error.description)
        }
    }

    /// A tensor's xxHash64 as stored in tables, computed in 64 MiB pieces that are dropped from this process
    /// once hashed: a 2.8 GB expert stack never sits in memory whole.
    public func checksum(of tensor: PackTensor) throws(PackError) -> String {
        let bytes = try bytes(of: tensor)
        var hash = XXHash64()
        var at = 0
        while at < bytes.count {
            let end = min(bytes.count, at + (64 << 20))
            file.adviseSequential((tensor.offset + at)..<(tensor.offset + end))
            hash.update(UnsafeRawBufferPointer(rebasing: bytes[at..<end]))
            file.adviseDone((tensor.offset + at)..<(tensor.offset + end))
            at = end
        }
        return XXHash64.hex(hash.finalize())
    }

    /// Recomputes every tensor's checksum; returns the mismatches.
    public func verifyChecksums() -> [PackError] {
        table.tensors.compactMap { t -> PackError? in
            do throws(PackError) {
                let actual = try checksum(of: t)
                return actual == t.xxh64 ? nil : .checksumMismatch(file: name, tensor: t.name, expected: t.xxh64, actual: actual)
            } catch {
                return error
            }
        }
    }
}
