import FileIO
import Checkpoint
import JSONCore
import TensorCore

/// One tensor's entry in a GGUF file's header.
public struct GGUFTensorInfo: Sendable, Equatable {
    public var name: String
    public var type: GGMLType
    /// ggml order: `ne[0]` is the innermost (contiguous) dimension — the reverse of numpy / torch order.
    public var ne: [Int]
    /// Offset of the data relative to the start of the data section.
    public var offset: Int
    public var elementCount: Int
    public var byteCount: Int

    /// numpy / torch order (outermost first): `ne` reversed.
    public var shape: [Int] { ne.reversed() }
}

/// A metadata key and its value, in file order.
public struct GGUFKeyValue: Sendable, Equatable {
    public var key: String
    public var value: GGUFValue

    public init(key: String, value: GGUFValue) {
        self.key = key
        self.value = value
    }
}

/// A validated GGUF file (version 2 or 3, little-endian), mapped read-only: tensor bytes are views of the mapping,
/// never copies.
///
/// Every count, length, dimension product, offset and size read from the file is overflow-checked and bounded by
/// what the rest of the file can hold before anything is allocated. Refused, each naming the file and the key or
/// tensor: a bad magic or version, a big-endian file, a header cut short, unknown value or tensor types, a bool
/// other than 0/1, invalid UTF-8, arrays nested deeper than 8, duplicate keys or tensor names, more than 4
/// dimensions, `ne[0]` not a whole number of blocks, data offsets that are not exactly the padded running sum
/// (misaligned, overlapping, or with a gap), a tensor past the end of the file, and bytes after the padded end of
/// the data. `general.alignment` must be a u32 power of two (default 32).
public final class GGUFFile: Sendable {
    public static let magic: [UInt8] = Array("GGUF".utf8)
    public static let defaultAlignment = 32
    /// GGUF's limit on tensor names (ggml/docs/gguf.md: "at most 64 bytes").
    public static let maxTensorNameLength = 64
    public static let maxDimensions = 4
    public static let maxArrayDepth = 8
    /// Keys are short identifiers; a 64 KiB key is refused before it is read.
    public static let maxKeyLength = 65_536

    /// The path given.
    public let path: String
    public let file: ReadOnlyFile
    public let version: UInt32
    public let metadata: [GGUFKeyValue]
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    /// Absolute file offset of the data section.
    public let dataStart: Int
    /// Keys and names compared as bytes (as llama.cpp and gguf-py do): NFC and NFD spellings are two entries.
    private let keyIndex: [ByteName: Int]
    private let tensorIndex: [ByteName: Int]

    public var fileLength: Int { file.byteCount }

    /// Opens, maps and validates `path`.
    public convenience init(path: String) throws(GGUFError) {
        let file: ReadOnlyFile
        do {
            file = try ReadOnlyFile(path: path)
        } catch {
            throw Self.ioError(error, path: path)
        }
        try self.init(file: file, path: path)
    }

    public init(file: ReadOnlyFile, path: String) throws(GGUFError) {
        let bytes: UnsafeRawBufferPointer
        do {
            bytes = try file.mapped()
        } catch {
            throw Self.ioError(error, path: path)
        }
        var parser = HeaderParser(bytes: bytes, file: path)
        let header = try parser.parse()
        self.path = path
        self.file = file
        self.version = header.version
        self.metadata = header.metadata
        self.tensors = header.tensors
        self.alignment = header.alignment
        self.dataStart = header.dataStart
        self.keyIndex = header.keyIndex
        self.tensorIndex = header.tensorIndex
    }

    static func ioError(_ error: FileIOError, path: String) -> GGUFError {
        if case let .io(p, operation, reason) = error { return .io(path: p, operation: operation, reason: reason) }
        return .io(path: path, operation: "read", reason: error.description)
    }

    public subscript(key: String) -> GGUFValue? {
        keyIndex[ByteName(key)].map { metadata[$0].value }
    }

    public func tensor(named name: String) -> GGUFTensorInfo? {
        tensorIndex[ByteName(name)].map { tensors[$0] }
    }

    /// The tensor's bytes: a view of the mapping, valid while this object lives.
    public func bytes(of tensor: GGUFTensorInfo) throws(GGUFError) -> UnsafeRawBufferPointer {
        let mapping: UnsafeRawBufferPointer
        do {
            mapping = try file.mapped()
        } catch {
            throw Self.ioError(error, path: path)
        }
        // Validated at open: dataStart + offset + byteCount ≤ fileLength.
        let start = dataStart + tensor.offset
        return UnsafeRawBufferPointer(rebasing: mapping[start..<(start + tensor.byteCount)])
    }

    /// The architecture (`general.architecture`), when present and a string.
    public var architecture: String? { self["general.architecture"]?.stringValue }
}

extension GGUFDequantizer {
    /// A tensor of `file` as float32 values in ggml order (`ne[0]` fastest).
    public static func dequantize(_ tensor: GGUFTensorInfo, of file: GGUFFile, threads: Int = 1) throws(GGUFError) -> [Float] {
        guard tensor.type.canDequantize else {
            throw .cannotDequantize(file: file.path, tensor: tensor.name, type: tensor.type)
        }
        let bytes = try file.bytes(of: tensor)
        return [Float](unsafeUninitializedCapacity: tensor.elementCount) { buffer, initialized in
            dequantize(tensor.type, blocks: bytes, into: UnsafeMutableBufferPointer(rebasing: buffer[0..<tensor.elementCount]), threads: threads)
            initialized = tensor.elementCount
        }
    }
}

// MARK: - Parsing

private struct ParsedHeader {
    var version: UInt32
    var metadata: [GGUFKeyValue]
    var keyIndex: [ByteName: Int]
    var tensors: [GGUFTensorInfo]
    var tensorIndex: [ByteName: Int]
    var alignment: Int
    var dataStart: Int
}

/// A bounds-checked little-endian reader over the mapped header.
private struct HeaderParser {
    let bytes: UnsafeRawBufferPointer
    let file: String
    var offset = 0

    init(bytes: UnsafeRawBufferPointer, file: String) {
        self.bytes = bytes
        self.file = file
    }

    var remaining: Int { bytes.count - offset }

    func need(_ n: Int, _ reading: @autoclosure () -> String) throws(GGUFError) {
        guard n <= remaining else {
            throw .truncatedHeader(file: file, offset: offset, needed: n, fileLength: bytes.count, reading: reading())
        }
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, _ reading: @autoclosure () -> String) throws(GGUFError) -> T {
        try need(MemoryLayout<T>.size, reading())
        let v = T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    /// A GGUF string: u64 length, then that many UTF-8 bytes.
    mutating func string(_ what: @autoclosure () -> String, limit: Int) throws(GGUFError) -> String {
        let length = try load(UInt64.self, "the length of \(what())")
        guard length <= UInt64(limit) else { throw .stringTooLong(file: file, what: what(), length: length, limit: limit) }
        guard length <= UInt64(remaining) else {
            throw .truncatedHeader(file: file, offset: offset, needed: Int(clamping: length), fileLength: bytes.count, reading: what())
        }
        let n = Int(length)
        let raw = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
        offset += n
        guard let text = String(validating: raw, as: UTF8.self) else { throw .invalidUTF8(file: file, what: what()) }
        return text
    }

    mutating func parse() throws(GGUFError) -> ParsedHeader {
        guard bytes.count >= 4, Array(bytes[0..<4]) == GGUFFile.magic else {
            throw .notGGUF(file: file, magic: Array(bytes.prefix(4)))
        }
        offset = 4
        let version = try load(UInt32.self, "the version")
        guard version == 2 || version == 3 else {
            if version.byteSwapped == 2 || version.byteSwapped == 3 { throw .bigEndian(file: file) }
            throw .unsupportedVersion(file: file, version: version)
        }
        let tensorCount = try load(UInt64.self, "the tensor count")
        let kvCount = try load(UInt64.self, "the metadata key count")

        // A key-value pair takes at least 13 bytes (key length, type, one byte of value); a tensor info 24.
        guard kvCount <= UInt64(remaining / 13) else {
            throw .countTooLarge(file: file, what: "the metadata key count", count: kvCount, limit: remaining / 13)
        }
        var metadata: [GGUFKeyValue] = []
        var keyIndex: [ByteName: Int] = [:]
        metadata.reserveCapacity(Int(kvCount))
        for i in 0..<Int(kvCount) {
            let key = try string("key \(i) of \(kvCount)", limit: GGUFFile.maxKeyLength)
            let rawType = try load(UInt32.self, "the value type of key '\(key)'")
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw .unknownValueType(file: file, key: key, type: rawType)
            }
            let value = try self.value(of: type, key: key, depth: 0)
            guard keyIndex.updateValue(metadata.count, forKey: ByteName(key)) == nil else { throw .duplicateKey(file: file, key: key) }
            metadata.append(GGUFKeyValue(key: key, value: value))
        }

        var alignment = GGUFFile.defaultAlignment
        if let index = keyIndex[ByteName("general.alignment")] {
            let value = metadata[index].value
            guard case let .u32(a) = value else {
                throw .wrongKeyType(file: file, key: "general.alignment", found: value.typeName, expected: "u32")
            }
            guard a != 0, a & (a - 1) == 0 else { throw .badAlignment(file: file, alignment: UInt64(a)) }
            alignment = Int(a)
        }

        guard tensorCount <= UInt64(remaining / 24) else {
            throw .countTooLarge(file: file, what: "the tensor count", count: tensorCount, limit: remaining / 24)
        }
        var tensors: [GGUFTensorInfo] = []
        var tensorIndex: [ByteName: Int] = [:]
        tensors.reserveCapacity(Int(tensorCount))
        var rawOffsets: [UInt64] = []
        rawOffsets.reserveCapacity(Int(tensorCount))
        for i in 0..<Int(tensorCount) {
            let (info, rawOffset) = try tensorInfo(index: i, count: tensorCount)
            guard tensorIndex.updateValue(tensors.count, forKey: ByteName(info.name)) == nil else {
                throw .duplicateTensor(file: file, tensor: info.name)
            }
            tensors.append(info)
            rawOffsets.append(rawOffset)
        }

        let headerEnd = offset
        // Padding to the alignment; overflow impossible (headerEnd ≤ file length, alignment ≤ 2³¹).
        let dataStart = (headerEnd + alignment - 1) / alignment * alignment
        var expected = 0
        var previous: String?
        for (i, rawOffset) in rawOffsets.enumerated() {
            let t = tensors[i]
            if rawOffset % UInt64(alignment) != 0 {
                throw .misalignedOffset(file: file, tensor: t.name, offset: rawOffset, alignment: alignment)
            }
            if rawOffset < UInt64(expected), let previous {
                throw .offsetOverlap(file: file, tensor: t.name, previous: previous, offset: rawOffset, expected: expected)
            }
            if rawOffset != UInt64(expected) {
                throw .offsetGap(file: file, tensor: t.name, previous: previous, offset: rawOffset, expected: expected)
            }
            // expected ≤ Int.max here; the end and the padded end are checked.
            guard let end = CheckedMath.add(expected, t.byteCount), let absoluteEnd = CheckedMath.add(dataStart, end),
                let padded = CheckedMath.add(end, (alignment - end % alignment) % alignment)
            else {
                throw .tensorPastEnd(file: file, tensor: t.name, end: Int.max, fileLength: bytes.count)
            }
            if absoluteEnd > bytes.count {
                throw .tensorPastEnd(file: file, tensor: t.name, end: absoluteEnd, fileLength: bytes.count)
            }
            tensors[i].offset = expected
            expected = padded
            previous = t.name
        }
        if tensors.isEmpty {
            // No data: the file may end after the tensor infos or after their padding.
            if bytes.count > dataStart {
                throw .trailingBytes(file: file, fileLength: bytes.count, expectedLength: dataStart)
            }
        } else {
            // The last tensor's padding may be absent; nothing may follow it.
            let paddedEnd = dataStart + expected
            if bytes.count > paddedEnd {
                throw .trailingBytes(file: file, fileLength: bytes.count, expectedLength: paddedEnd)
            }
        }
        return ParsedHeader(
            version: version, metadata: metadata, keyIndex: keyIndex, tensors: tensors, tensorIndex: tensorIndex,
            alignment: alignment, dataStart: dataStart)
    }

    mutating func tensorInfo(index: Int, count: UInt64) throws(GGUFError) -> (GGUFTensorInfo, UInt64) {
        let name = try string("the name of tensor \(index) of \(count)", limit: Int.max)
        if name.utf8.count > GGUFFile.maxTensorNameLength {
            throw .tensorNameTooLong(file: file, tensor: name, length: name.utf8.count)
        }
        let nDims = try load(UInt32.self, "the dimension count of tensor '\(name)'")
        guard nDims <= UInt32(GGUFFile.maxDimensions) else {
            throw .tooManyDimensions(file: file, tensor: name, dimensions: nDims)
        }
        var rawNe: [UInt64] = []
        for d in 0..<Int(nDims) {
            rawNe.append(try load(UInt64.self, "ne[\(d)] of tensor '\(name)'"))
        }
        let rawType = try load(UInt32.self, "the type of tensor '\(name)'")
        let rawOffset = try load(UInt64.self, "the data offset of tensor '\(name)'")
        for dim in rawNe where dim > UInt64(Int64.max) {
            throw .dimensionTooLarge(file: file, tensor: name, dimension: dim)
        }
        guard let type = GGMLType(rawValue: rawType) else { throw .unknownType(file: file, tensor: name, type: rawType) }
        let ne = rawNe.map { Int($0) }
        let ne0 = ne.first ?? 1
        if ne0 % type.blockSize != 0 {
            throw .rowNotWholeBlocks(file: file, tensor: name, ne0: ne0, type: type)
        }
        guard let elements = CheckedMath.product(ne), let rows = CheckedMath.product(Array(ne.dropFirst())),
            let rowBytes = CheckedMath.multiply(ne0 / type.blockSize, type.typeSize),
            let byteCount = CheckedMath.multiply(rowBytes, rows)
        else {
            throw .shapeOverflow(file: file, tensor: name, ne: rawNe)
        }
        return (GGUFTensorInfo(name: name, type: type, ne: ne, offset: 0, elementCount: elements, byteCount: byteCount), rawOffset)
    }

    mutating func value(of type: GGUFValueType, key: String, depth: Int) throws(GGUFError) -> GGUFValue {
        switch type {
        case .u8: return .u8(try load(UInt8.self, "the value of key '\(key)'"))
        case .i8: return .i8(try load(Int8.self, "the value of key '\(key)'"))
        case .u16: return .u16(try load(UInt16.self, "the value of key '\(key)'"))
        case .i16: return .i16(try load(Int16.self, "the value of key '\(key)'"))
        case .u32: return .u32(try load(UInt32.self, "the value of key '\(key)'"))
        case .i32: return .i32(try load(Int32.self, "the value of key '\(key)'"))
        case .f32: return .f32(Float(bitPattern: try load(UInt32.self, "the value of key '\(key)'")))
        case .bool: return .bool(try bool(key: key))
        case .string: return .string(try string("the value of key '\(key)'", limit: Int.max))
        case .u64: return .u64(try load(UInt64.self, "the value of key '\(key)'"))
        case .i64: return .i64(try load(Int64.self, "the value of key '\(key)'"))
        case .f64: return .f64(Double(bitPattern: try load(UInt64.self, "the value of key '\(key)'")))
        case .array: return .array(try array(key: key, depth: depth + 1))
        }
    }

    mutating func bool(key: String) throws(GGUFError) -> Bool {
        let b = try load(UInt8.self, "the value of key '\(key)'")
        guard b <= 1 else { throw .invalidBool(file: file, key: key, value: b) }
        return b == 1
    }

    mutating func array(key: String, depth: Int) throws(GGUFError) -> GGUFArray {
        guard depth <= GGUFFile.maxArrayDepth else { throw .arrayTooDeep(file: file, key: key, limit: GGUFFile.maxArrayDepth) }
        let rawType = try load(UInt32.self, "the element type of key '\(key)'")
        guard let type = GGUFValueType(rawValue: rawType) else { throw .unknownValueType(file: file, key: key, type: rawType) }
        let count = try load(UInt64.self, "the element count of key '\(key)'")
        let limit = remaining / type.minimumBytes
        guard count <= UInt64(limit) else {
            throw .countTooLarge(file: file, what: "the element count of key '\(key)'", count: count, limit: limit)
        }
        let n = Int(count)
        let what = "an element of key '\(key)'"
        switch type {
        case .u8: return .u8(try fixed(n, UInt8.self))
        case .i8: return .i8(try fixed(n, Int8.self))
        case .u16: return .u16(try fixed(n, UInt16.self))
        case .i16: return .i16(try fixed(n, Int16.self))
        case .u32: return .u32(try fixed(n, UInt32.self))
        case .i32: return .i32(try fixed(n, Int32.self))
        case .u64: return .u64(try fixed(n, UInt64.self))
        case .i64: return .i64(try fixed(n, Int64.self))
        case .f32: return .f32(try fixed(n, UInt32.self).map { Float(bitPattern: $0) })
        case .f64: return .f64(try fixed(n, UInt64.self).map { Double(bitPattern: $0) })
        case .bool:
            var out: [Bool] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try bool(key: key)) }
            return .bool(out)
        case .string:
            var out: [String] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try string(what, limit: Int.max)) }
            return .string(out)
        case .array:
            var out: [GGUFArray] = []
            out.reserveCapacity(n)
            for _ in 0..<n { out.append(try array(key: key, depth: depth + 1)) }
            return .array(out)
        }
    }

    /// `n` fixed-width integers (already bounded by the remaining bytes).
    mutating func fixed<T: FixedWidthInteger>(_ n: Int, _: T.Type) throws(GGUFError) -> [T] {
        try need(n * MemoryLayout<T>.size, "\(n) array elements")
        let start = offset
        let base = bytes
        offset += n * MemoryLayout<T>.size
        return (0..<n).map { T(littleEndian: base.loadUnaligned(fromByteOffset: start + $0 * MemoryLayout<T>.size, as: T.self)) }
    }
}
