/// Finds NaN and infinite scales in ggml blocks, and NaN and infinite values in the plain float types, without
/// dequantizing: each block's f16 scale fields (ggml-common.h's block structs) are tested for an all-ones exponent.
///
/// Checked: Q4_0 / Q5_0 / Q8_0 / IQ4_NL `d`; Q4_1 / Q5_1 `d` and `m`; Q8_1 `d` and `s`; Q2_K / Q4_K / Q5_K `d` and
/// `dmin`; Q3_K / Q6_K / Q8_K (an f32) `d`; the IQ types' `d` (IQ1_M's assembled from the top nibbles of its four
/// scale words); TQ1_0 / TQ2_0 `d`; every element of F16, BF16, F32 and F64. Not checked: MXFP4 (its E8M0 scale has
/// no NaN or infinity in ggml's conversion: 255 is 2¹²⁷) and the integer types.
public enum GGUFScaleScan {
    /// A scale field of a block: its name and where it sits.
    public struct Field: Sendable, Equatable {
        public enum Encoding: Sendable, Equatable {
            /// An f16 at this byte offset in the block.
            case f16(Int)
            /// An f32 at this byte offset in the block.
            case f32(Int)
            /// IQ1_M: the f16 made of the top nibbles of the four u16 scale words at byte 48.
            case iq1m
        }

        public var name: String
        public var encoding: Encoding
    }

    /// What one range of blocks (or, for the plain types, elements) holds.
    public struct Result: Sendable, Equatable {
        /// Blocks with at least one non-finite scale (plain types: non-finite elements).
        public var count = 0
        /// The first such block (plain types: element), the field (nil for plain types) and its value.
        public var first: (index: Int, field: String?, value: Float)?

        public init() {}

        public static func == (a: Result, b: Result) -> Bool {
            a.count == b.count && a.first?.index == b.first?.index && a.first?.field == b.first?.field
                && a.first?.value.bitPattern == b.first?.value.bitPattern
        }

        /// Adds `other`, a later or earlier range of the same tensor.
        public mutating func merge(_ other: Result) {
            count += other.count
            if let o = other.first, first.map({ o.index < $0.index }) ?? true { first = o }
        }
    }

    /// The scale fields of one block of `type`; empty for the plain and integer types and MXFP4.
    public static func fields(_ type: GGMLType) -> [Field] {
        switch type {
        case .q4_0, .q5_0, .q8_0, .iq4_NL, .iq2_XXS, .iq2_XS, .iq2_S, .iq3_XXS, .iq3_S, .iq1_S, .iq4_XS:
            [Field(name: "d", encoding: .f16(0))]
        case .q4_1, .q5_1: [Field(name: "d", encoding: .f16(0)), Field(name: "m", encoding: .f16(2))]
        case .q8_1: [Field(name: "d", encoding: .f16(0)), Field(name: "s", encoding: .f16(2))]
        case .q2_K: [Field(name: "d", encoding: .f16(80)), Field(name: "dmin", encoding: .f16(82))]
        case .q3_K: [Field(name: "d", encoding: .f16(108))]
        case .q4_K, .q5_K: [Field(name: "d", encoding: .f16(0)), Field(name: "dmin", encoding: .f16(2))]
        case .q6_K: [Field(name: "d", encoding: .f16(208))]
        case .q8_K: [Field(name: "d", encoding: .f32(0))]
        case .iq1_M: [Field(name: "d", encoding: .iq1m)]
        case .tq1_0: [Field(name: "d", encoding: .f16(52))]
        case .tq2_0: [Field(name: "d", encoding: .f16(64))]
        case .f32, .f16, .bf16, .f64, .i8, .i16, .i32, .i64, .mxfp4: []
        }
    }

    /// Whether the scan checks elements (the plain float types) rather than block scales.
    public static func checksElements(_ type: GGMLType) -> Bool {
        switch type {
        case .f16, .bf16, .f32, .f64: true
        default: false
        }
    }

    /// Whether `type` has anything to check.
    public static func checks(_ type: GGMLType) -> Bool { checksElements(type) || !fields(type).isEmpty }

    /// Scans whole blocks of `type` (plain types: elements); `firstIndex` is the index of the first one in its
    /// tensor, so the result names tensor-wide indices.
    public static func scan(_ type: GGMLType, _ bytes: UnsafeRawBufferPointer, firstIndex: Int = 0) -> Result {
        var result = Result()
        guard let base = bytes.baseAddress else { return result }
        let size = type.typeSize
        let count = bytes.count / size
        switch type {
        case .f16: scanElements(base, count, firstIndex, UInt16.self, mask: 0x7C00, into: &result) { GGUFDequantizer.halfToFloat($0) }
        case .bf16: scanElements(base, count, firstIndex, UInt16.self, mask: 0x7F80, into: &result) { Float(bitPattern: UInt32($0) << 16) }
        case .f32: scanElements(base, count, firstIndex, UInt32.self, mask: 0x7F80_0000, into: &result) { Float(bitPattern: $0) }
        case .f64:
            scanElements(base, count, firstIndex, UInt64.self, mask: 0x7FF0_0000_0000_0000, into: &result) { Float(Double(bitPattern: $0)) }
        default:
            let list = fields(type)
            for i in 0..<count {
                let block = base + i &* size
                for field in list {
                    if let bad = nonFinite(field.encoding, block) {
                        result.note(firstIndex + i, field.name, bad)
                        break
                    }
                }
            }
        }
        return result
    }

    /// The field's value when it is NaN or infinite.
    @inline(__always) static func nonFinite(_ encoding: Field.Encoding, _ block: UnsafeRawPointer) -> Float? {
        switch encoding {
        case .f16(let at):
            let h = UInt16(littleEndian: block.loadUnaligned(fromByteOffset: at, as: UInt16.self))
            return h & 0x7C00 == 0x7C00 ? GGUFDequantizer.halfToFloat(h) : nil
        case .f32(let at):
            let bits = UInt32(littleEndian: block.loadUnaligned(fromByteOffset: at, as: UInt32.self))
            return bits & 0x7F80_0000 == 0x7F80_0000 ? Float(bitPattern: bits) : nil
        case .iq1m:
            let h = GGUFDequantizer.iq1mScale(block)
            return h & 0x7C00 == 0x7C00 ? GGUFDequantizer.halfToFloat(h) : nil
        }
    }

    private static func scanElements<T: FixedWidthInteger>(
        _ base: UnsafeRawPointer, _ count: Int, _ firstIndex: Int, _: T.Type, mask: T, into result: inout Result, value: (T) -> Float
    ) {
        let width = MemoryLayout<T>.size
        for i in 0..<count {
            let bits = T(littleEndian: base.loadUnaligned(fromByteOffset: i &* width, as: T.self))
            if bits & mask == mask { result.note(firstIndex + i, nil, value(bits)) }
        }
    }
}

extension GGUFScaleScan.Result {
    mutating func note(_ index: Int, _ field: String?, _ value: Float) {
        count += 1
        if first == nil { first = (index, field, value) }
    }
}
