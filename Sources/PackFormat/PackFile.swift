import Archive
import Checkpoint
import FileIO
import Foundation
import JSONCore
import TensorCore

/// A k2pack file opened for reading: header and table validated, data mapped on demand.
public final class PackFile: Sendable {
    public let name: String
    public let table: PackTable
    public let file: ReadOnlyFile
    /// The compressed archive form (`.k2z`).
    public let isArchive: Bool
    /// Archive form: for each tensor and each of its sources, the range of its frames.
    private let sourceFrames: [[Range<Int>]]
    private let positions: [ByteName: Int]

    public convenience init(path: String, name: String? = nil) throws(PackError) {
        let file: ReadOnlyFile
        do { file = try ReadOnlyFile(path: path) } catch { throw .io(path: path, operation: "open", reason: error.description) }
        try self.init(file: file, name: name ?? URL(fileURLWithPath: path).lastPathComponent)
    }

    /// Opens the file `name` (a relative path) of the input folder `folder`, refused when it resolves outside
    /// the folder (`ReadOnlyFile(folder:name:)`).
    public convenience init(folder: String, name: String) throws(PackError) {
        let file: ReadOnlyFile
        do { file = try ReadOnlyFile(folder: folder, name: name) } catch {
            if case .outsideFolder = error { throw .notPack(file: name, reason: error.description) }
            throw .io(path: folder + "/" + name, operation: "open", reason: error.description)
        }
        try self.init(file: file, name: name)
    }

    init(file: ReadOnlyFile, name: String) throws(PackError) {
        self.name = name
        self.file = file
        (table, isArchive) = try Self.readTable(file, name: name)
        sourceFrames = isArchive ? try table.tensors.map { t throws(PackError) in try Self.frameRanges(t, file: name) } : []
        var positions: [ByteName: Int] = [:]
        for (i, t) in table.tensors.enumerated() where positions[ByteName(t.name)] == nil { positions[ByteName(t.name)] = i }
        self.positions = positions
    }

    /// The sources' lengths added up (nil when one is negative or the sum overflows).
    static func sourcesLength(_ t: PackTensor) -> Int? {
        var total = 0
        for s in t.sources {
            guard s.length >= 0, let sum = CheckedMath.add(total, s.length) else { return nil }
            total = sum
        }
        return total
    }

    /// Frames must tile the tensor and start a new frame at every source boundary.
    static func frameRanges(_ t: PackTensor, file: String) throws(PackError) -> [Range<Int>] {
        guard let frames = t.frames else { throw .tensorInvalid(file: file, tensor: t.name, reason: "an archive tensor needs its frames") }
        var ranges: [Range<Int>] = []
        var f = 0
        for source in t.sources {
            let first = f
            var covered = 0
            while covered < source.length, f < frames.count {
                covered += frames[f].size
                f += 1
            }
            guard covered == source.length else {
                throw .tensorInvalid(file: file, tensor: t.name, reason: "its frames do not end where source '\(displayed(source.name))' ends")
            }
            ranges.append(first..<f)
        }
        guard f == frames.count else { throw .tensorInvalid(file: file, tensor: t.name, reason: "it has \(frames.count - f) frame(s) beyond its sources") }
        return ranges
    }

    static func readTable(_ file: ReadOnlyFile, name: String) throws(PackError) -> (PackTable, Bool) {
        guard file.byteCount >= PackSpec.fixedHeaderSize else {
            throw .notPack(file: name, reason: "\(file.byteCount) bytes is shorter than the \(PackSpec.fixedHeaderSize)-byte header")
        }
        let header: [UInt8]
        do { header = try file.read(count: PackSpec.fixedHeaderSize, at: 0) } catch { throw .io(path: name, operation: "read", reason: error.description) }
        let isArchive = Array(header[0..<8]) == PackSpec.archiveMagic
        guard Array(header[0..<8]) == PackSpec.magic || isArchive else { throw .notPack(file: name, reason: "wrong magic bytes") }
        func u64(_ at: Int) -> UInt64 { header.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: at, as: UInt64.self)) } }
        let version = header.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self)) }
        guard version == PackSpec.version else { throw .unsupportedVersion(file: name, version: version) }
        let flags = header.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)) }
        let marks = PackFlags(rawValue: flags)
        guard PackFlags.known.isSuperset(of: marks) else {
            throw .headerInvalid(
                file: name,
                reason: "flags 0x\(String(flags, radix: 16)) are not defined in version \(PackSpec.version) (this build knows \(PackFlags.known.text)): written by a newer or different tool")
        }
        // An archive written before the flag existed has flags 0: its magic says the same thing unambiguously.
        guard !marks.contains(.archive) || isArchive else {
            throw .headerInvalid(file: name, reason: "flags \(marks.text) mark an archive, but the magic is K2PACK, not K2PACKZ")
        }
        let alignment = u64(16), tableOffset = u64(24), tableLength = u64(32), dataOffset = u64(40), fileLength = u64(48)
        let tableHash = u64(56)
        guard alignment >= 64, alignment <= 1 << 30, alignment & (alignment - 1) == 0 else {
            throw .headerInvalid(file: name, reason: "alignment \(alignment) is not a power of two between 64 and 2^30")
        }
        guard fileLength == UInt64(file.byteCount) else {
            throw .headerInvalid(file: name, reason: "header records \(fileLength) bytes but the file has \(file.byteCount) (truncated or extended)")
        }
        let fits = isArchive
            ? dataOffset == UInt64(PackSpec.fixedHeaderSize) && tableOffset >= dataOffset && tableLength <= fileLength && tableOffset == fileLength - tableLength
            : tableOffset >= UInt64(PackSpec.fixedHeaderSize) && tableLength <= UInt64(PackSpec.maxTableLength) && tableOffset <= dataOffset
                && tableLength <= dataOffset - tableOffset && dataOffset <= fileLength
        guard tableLength <= UInt64(PackSpec.maxTableLength), fits else {
            throw .headerInvalid(file: name, reason: "table [\(tableOffset), +\(tableLength)) and data offset \(dataOffset) do not fit a \(fileLength)-byte file")
        }
        let tableBytes: [UInt8]
        do { tableBytes = try file.read(count: Int(tableLength), at: Int(tableOffset)) } catch { throw .io(path: name, operation: "read", reason: error.description) }
        let actual = tableBytes.withUnsafeBytes { XXHash64.hash($0) }
        guard actual == tableHash else { throw .tableChecksum(file: name, expected: XXHash64.hex(tableHash), actual: XXHash64.hex(actual)) }
        let table: PackTable
        do { table = try StrictJSON.decode(PackTable.self, from: tableBytes) } catch { throw .tableInvalid(file: name, reason: error.description) }
        // The table repeats the format, version and alignment: all must agree with the header.
        guard table.format == "k2pack" else { throw .tableInvalid(file: name, reason: "format \"\(displayed(table.format))\", expected \"k2pack\"") }
        guard table.version == Int(PackSpec.version) else {
            throw .tableInvalid(file: name, reason: "version \(table.version), expected \(PackSpec.version) (the header's)")
        }
        guard table.alignment == Int(alignment) else {
            throw .tableInvalid(file: name, reason: "alignment \(table.alignment), but the header says \(alignment)")
        }
        guard (table.compression == "zstd") == isArchive, table.compression == nil || isArchive else {
            throw .tableInvalid(file: name, reason: isArchive ? "an archive's table must say compression \"zstd\"" : "compression \"\(displayed(table.compression ?? ""))\" in an uncompressed file")
        }
        // A sliced file written before the flag existed has flags 0 (its table's `slice`s say so unambiguously); a
        // flag without a sliced source is a header that does not describe its table.
        if marks.contains(.slicedSources), !table.tensors.contains(where: { $0.sources.contains { $0.slice != nil } }) {
            throw .tableInvalid(file: name, reason: "the header's flags \(marks.text) mark sliced sources, but no source has a slice")
        }
        var names = Set<ByteName>()
        for t in table.tensors where !names.insert(ByteName(t.name)).inserted {
            throw .tableInvalid(file: name, reason: "tensor '\(displayed(t.name))' is listed twice")
        }
        if isArchive {
            try validateFrames(table, name: name, dataEnd: Int(tableOffset))
            return (table, true)
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
            guard sourcesLength(t) == t.length else {
                throw .tensorInvalid(file: name, tensor: t.name, reason: "its source slices do not add up to its length")
            }
            guard t.frames == nil else { throw .tensorInvalid(file: name, tensor: t.name, reason: "frames in an uncompressed file") }
            end = stop
        }
        return (table, false)
    }

    /// Archive frames: inside the data area, in order, not overlapping, each at most `maxFrameSize` of content
    /// (and not implausibly larger compressed), adding up to the tensor's length.
    static func validateFrames(_ table: PackTable, name: String, dataEnd: Int) throws(PackError) {
        var end = PackSpec.fixedHeaderSize
        for t in table.tensors {
            guard let bytes = CheckedMath.byteCount(shape: t.shape, dtype: t.dtype), bytes == t.length else {
                throw .tensorInvalid(file: name, tensor: t.name, reason: "length \(t.length) does not match shape \(formatShape(t.shape)) \(t.dtype.rawValue)")
            }
            guard sourcesLength(t) == t.length else {
                throw .tensorInvalid(file: name, tensor: t.name, reason: "its source slices do not add up to its length")
            }
            var total = 0
            for (i, frame) in (t.frames ?? []).enumerated() {
                guard frame.size > 0, frame.size <= PackSpec.maxFrameSize, frame.length > 0, frame.length <= frame.size + frame.size / 64 + 4096,
                    frame.offset >= end, let stop = CheckedMath.add(frame.offset, frame.length), stop <= dataEnd
                else {
                    throw .tensorInvalid(file: name, tensor: t.name, reason: "frame \(i) [\(frame.offset), +\(frame.length)) → \(frame.size) bytes is out of order, overlaps, runs past the data or is implausibly sized")
                }
                end = stop
                total += frame.size
            }
            guard total == t.length else {
                throw .tensorInvalid(file: name, tensor: t.name, reason: "its frames hold \(total) bytes, its shape needs \(t.length)")
            }
        }
    }

    /// Where source `index` of a stored tensor lies in an uncompressed file: its sources are stored back to back.
    public static func storedRange(_ tensor: PackTensor, _ index: Int) -> Range<Int> {
        let start = tensor.offset + tensor.sources[..<index].reduce(0) { $0 + $1.length }
        return start..<(start + tensor.sources[index].length)
    }

    /// Copies the bytes of source `index` of a tensor into `output` from byte `offset` on, in pieces of at most
    /// `ChunkedCopy.pieceBytes` (see `readSource`).
    /// A failure while this file changed under us (a write from a mapping that shrank fails) names this file.
    public func copySource(_ tensor: PackTensor, _ index: Int, to output: AtomicFile, at offset: Int) throws {
        var at = offset
        do {
            try readSource(tensor, index) { piece in
                try output.write(piece, at: at)
                at += piece.count
            }
        } catch {
            try file.checkUnchanged()
            throw error
        }
    }

    /// Hands `body` the bytes of source `index` of a tensor in order, in pieces of at most `ChunkedCopy.pieceBytes`:
    /// slices of the mapping (dropped from this process once used, `ReadOnlyFile.copyPieces`) or, in an archive,
    /// its decompressed frames.
    public func readSource(_ tensor: PackTensor, _ index: Int, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard let t = positions[ByteName(tensor.name)] else { throw PackError.tensorInvalid(file: name, tensor: tensor.name, reason: "not in this file") }
        let stored = table.tensors[t]
        guard isArchive else {
            try file.copyPieces(of: Self.storedRange(stored, index), body)
            return
        }
        let frames = stored.frames ?? []
        for f in sourceFrames[t][index] {
            let frame = frames[f]
            let compressed = try file.read(count: frame.length, at: frame.offset)
            let content: [UInt8]
            do {
                content = try compressed.withUnsafeBytes { raw throws(Zstd.Failure) in try Zstd.decompress(raw, maxSize: frame.size) }
            } catch {
                throw PackError.tensorInvalid(file: name, tensor: stored.name, reason: "frame \(f): \(error)")
            }
            guard content.count == frame.size else {
                throw PackError.tensorInvalid(file: name, tensor: stored.name, reason: "frame \(f) holds \(content.count) bytes, the table says \(frame.size)")
            }
            try content.withUnsafeBytes(body)
        }
    }

    /// A whole tensor's bytes in memory (small tensors; large ones go through `readSource`).
    public func contents(of tensor: PackTensor) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(tensor.length)
        for i in tensor.sources.indices { try readSource(tensor, i) { bytes += $0 } }
        return bytes
    }

    /// A tensor's xxHash64 as stored in tables, computed piece by piece: a 2.8 GB expert stack never sits in
    /// memory whole.
    public func checksum(of tensor: PackTensor) throws(PackError) -> String {
        var hash = XXHash64()
        do {
            for i in tensor.sources.indices { try readSource(tensor, i) { hash.update($0) } }
        } catch let error as PackError {
            throw error
        } catch {
            throw .io(path: name, operation: "read", reason: "\(error)")
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
