import GGUF
import TensorCore

/// A tensor as a GGUF header describes it: name, ggml type and ggml dimensions (`ne[0]` innermost).
public struct GGUFTensorDescriptor: Sendable, Equatable {
    public var name: String
    public var type: GGMLType
    public var ne: [Int]

    public init(name: String, type: GGMLType, ne: [Int]) {
        self.name = name
        self.type = type
        self.ne = ne
    }

    /// Bytes of the data (`ne[0] / blockSize · typeSize` per row), nil on overflow or rows that are not whole blocks.
    public var byteCount: Int? {
        guard let first = ne.first, first % type.blockSize == 0, let rows = CheckedMath.product(Array(ne.dropFirst())) else { return nil }
        guard let rowBytes = CheckedMath.multiply(first / type.blockSize, type.typeSize) else { return nil }
        return CheckedMath.multiply(rowBytes, rows)
    }
}

/// One GGUF file's header (version 3, little-endian) laid out: the key-value pairs, the tensor infos with their
/// data offsets (the padded running sum, in order), and the padding up to the data section, as bytes; the data
/// offsets and sizes the writer then fills.
///
/// Refused before anything is written: a key given twice, a tensor name given twice or longer than 64 bytes,
/// more than 4 dimensions, a first dimension that is not a whole number of blocks, and a `general.alignment`
/// that is not a u32 power of two.
public struct GGUFLayout: Sendable {
    public static let version: UInt32 = 3
    public let alignment: Int
    /// The header, padded to the alignment: the data section starts at `header.count`.
    public let header: [UInt8]
    public let tensors: [GGUFTensorDescriptor]
    /// Offset of each tensor's data relative to the data section.
    public let offsets: [Int]
    public let byteCounts: [Int]
    /// Bytes of the data section, each tensor padded to the alignment (the last one too, as llama.cpp writes it).
    public let dataBytes: Int

    public var fileBytes: Int { header.count + dataBytes }

    public init(metadata: [GGUFKeyValue], tensors: [GGUFTensorDescriptor]) throws(GGUFConvertError) {
        var seenKeys = Set<[UInt8]>()
        var alignment = GGUFFile.defaultAlignment
        for kv in metadata {
            guard seenKeys.insert(Array(kv.key.utf8)).inserted else { throw .duplicateKey(key: kv.key) }
            if kv.key == "general.alignment" {
                guard case let .u32(a) = kv.value, a != 0, a & (a - 1) == 0 else {
                    throw .invalidMetadata(key: kv.key, reason: "found \(kv.value.typeName) \(kv.value.summary), expected a u32 power of two")
                }
                alignment = Int(a)
            }
        }
        var seenNames = Set<[UInt8]>()
        var offsets: [Int] = []
        var byteCounts: [Int] = []
        var running = 0
        for t in tensors {
            guard seenNames.insert(Array(t.name.utf8)).inserted else { throw .duplicateTensor(tensor: t.name) }
            guard t.name.utf8.count <= GGUFFile.maxTensorNameLength else {
                throw .invalidTensor(tensor: t.name, reason: "the name is \(t.name.utf8.count) bytes, GGUF allows \(GGUFFile.maxTensorNameLength)")
            }
            guard !t.ne.isEmpty, t.ne.count <= GGUFFile.maxDimensions, t.ne.allSatisfy({ $0 >= 0 }) else {
                throw .invalidTensor(tensor: t.name, reason: "ne \(t.ne): GGUF holds 1 to \(GGUFFile.maxDimensions) non-negative dimensions")
            }
            guard t.ne[0] % t.type.blockSize == 0 else {
                throw .invalidTensor(tensor: t.name, reason: "ne[0] = \(t.ne[0]) is not a whole number of \(t.type.name) blocks of \(t.type.blockSize)")
            }
            guard let bytes = t.byteCount, let end = CheckedMath.add(running, bytes),
                let padded = CheckedMath.add(end, (alignment - end % alignment) % alignment)
            else {
                throw .invalidTensor(tensor: t.name, reason: "ne \(t.ne) overflows the size arithmetic")
            }
            offsets.append(running)
            byteCounts.append(bytes)
            running = padded
        }

        var out = GGUFBytes()
        out.raw(GGUFFile.magic)
        out.int(Self.version)
        out.int(UInt64(tensors.count))
        out.int(UInt64(metadata.count))
        for kv in metadata {
            out.string(kv.key)
            out.int(kv.value.type.rawValue)
            out.value(kv.value)
        }
        for (i, t) in tensors.enumerated() {
            out.string(t.name)
            out.int(UInt32(t.ne.count))
            for n in t.ne { out.int(UInt64(n)) }
            out.int(t.type.rawValue)
            out.int(UInt64(offsets[i]))
        }
        out.pad(to: alignment)
        self.alignment = alignment
        self.header = out.bytes
        self.tensors = tensors
        self.offsets = offsets
        self.byteCounts = byteCounts
        self.dataBytes = running
    }
}

/// Little-endian GGUF encoding into a byte array.
struct GGUFBytes {
    var bytes: [UInt8] = []

    mutating func raw(_ b: [UInt8]) { bytes += b }

    mutating func int<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// u64 length, then the UTF-8 bytes (no NUL).
    mutating func string(_ s: String) {
        int(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }

    mutating func pad(to alignment: Int) {
        let n = (alignment - bytes.count % alignment) % alignment
        bytes.append(contentsOf: repeatElement(0, count: n))
    }

    mutating func value(_ v: GGUFValue) {
        switch v {
        case let .u8(x): int(x)
        case let .i8(x): int(x)
        case let .u16(x): int(x)
        case let .i16(x): int(x)
        case let .u32(x): int(x)
        case let .i32(x): int(x)
        case let .f32(x): int(x.bitPattern)
        case let .bool(x): int(UInt8(x ? 1 : 0))
        case let .string(s): string(s)
        case let .u64(x): int(x)
        case let .i64(x): int(x)
        case let .f64(x): int(x.bitPattern)
        case let .array(a): array(a)
        }
    }

    /// u32 element type, u64 count, the elements (a nested array's elements are arrays, each with its own
    /// element type and count).
    mutating func array(_ a: GGUFArray) {
        int(a.elementType.rawValue)
        int(UInt64(a.count))
        switch a {
        case let .u8(x): bytes += x
        case let .i8(x): for e in x { int(e) }
        case let .u16(x): for e in x { int(e) }
        case let .i16(x): for e in x { int(e) }
        case let .u32(x): for e in x { int(e) }
        case let .i32(x): for e in x { int(e) }
        case let .f32(x): for e in x { int(e.bitPattern) }
        case let .bool(x): for e in x { int(UInt8(e ? 1 : 0)) }
        case let .string(x): for e in x { string(e) }
        case let .u64(x): for e in x { int(e) }
        case let .i64(x): for e in x { int(e) }
        case let .f64(x): for e in x { int(e.bitPattern) }
        case let .array(x): for e in x { array(e) }
        }
    }
}
