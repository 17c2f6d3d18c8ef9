import TensorCore

/// compressed-tensors `pack-quantized` INT4: eight codes per little-endian int32 word, element `i` of a row in
/// bits `4·(i % 8)` of word `i / 8` (first element in the lowest nibble), each nibble holding `q + 8`
/// (offset binary, 0...15) for q in −8...7.
public enum PackedInt4 {
    public static let codesPerWord = 8
    /// The nibble that stores code `q`.
    @inlinable public static func nibble(_ q: Int8) -> UInt8 { UInt8(truncatingIfNeeded: Int(q) + 8) }
    /// The code a nibble stores.
    @inlinable public static func code(_ nibble: UInt8) -> Int8 { Int8(truncatingIfNeeded: Int(nibble & 0xF) - 8) }

    /// Packs codes (a multiple of 8 of them) into words.
    public static func pack(_ codes: [Int8]) -> [UInt32] {
        precondition(codes.count % codesPerWord == 0, "pack: code count must be a multiple of 8")
        var words = [UInt32](repeating: 0, count: codes.count / codesPerWord)
        for (i, q) in codes.enumerated() {
            words[i / codesPerWord] |= UInt32(nibble(q)) << UInt32(4 * (i % codesPerWord))
        }
        return words
    }

    /// Unpacks words into codes.
    public static func unpack(_ words: [UInt32]) -> [Int8] {
        var codes: [Int8] = []
        codes.reserveCapacity(words.count * codesPerWord)
        for w in words {
            for k in 0..<codesPerWord { codes.append(code(UInt8(truncatingIfNeeded: w >> UInt32(4 * k)))) }
        }
        return codes
    }
}

/// Code statistics of packed INT4 data: how often each code occurs, and how many groups are all zero.
public struct Int4CodeStats: Sendable, Equatable, Codable {
    /// Occurrences of codes −8...7 (index 0 is −8).
    public var histogram: [Int]
    public var groupCount: Int
    /// Groups whose every code is 0 (a dead group: its scale is irrelevant).
    public var zeroGroupCount: Int

    public init() {
        histogram = Array(repeating: 0, count: 16)
        groupCount = 0
        zeroGroupCount = 0
    }

    public mutating func merge(_ other: Int4CodeStats) {
        for i in 0..<16 { histogram[i] += other.histogram[i] }
        groupCount += other.groupCount
        zeroGroupCount += other.zeroGroupCount
    }

    /// Scans packed rows. `bytes` holds `rows` rows of `bytesPerRow` bytes; groups of `groupSize` codes run along
    /// each row (`groupSize` a multiple of 8 is checked per 4-byte word; otherwise only the histogram is kept).
    public static func scan(_ bytes: UnsafeRawBufferPointer, rows: Int, bytesPerRow: Int, groupSize: Int) -> Int4CodeStats {
        var stats = Int4CodeStats()
        var byteCounts = [Int](repeating: 0, count: 256)
        let wordsPerGroup = groupSize % 8 == 0 ? groupSize / 8 : 0
        FastScan.byteHistogram(UnsafeRawBufferPointer(rebasing: bytes[0..<min(bytes.count, rows * bytesPerRow)]), into: &byteCounts)
        if wordsPerGroup > 0 {
            let groupBytes = wordsPerGroup * 4
            let groupsPerRow = bytesPerRow / groupBytes
            for r in 0..<rows {
                let row = bytes.baseAddress! + r * bytesPerRow
                for g in 0..<groupsPerRow {
                    var allZero = true
                    var offset = g * groupBytes
                    let end = offset + groupBytes
                    // Code 0 is nibble 8: an all-zero group is all 0x88 bytes.
                    while offset + 8 <= end {
                        if row.loadUnaligned(fromByteOffset: offset, as: UInt64.self) != 0x8888_8888_8888_8888 { allZero = false; break }
                        offset += 8
                    }
                    while allZero, offset < end {
                        if row.load(fromByteOffset: offset, as: UInt8.self) != 0x88 { allZero = false }
                        offset += 1
                    }
                    if allZero { stats.zeroGroupCount += 1 }
                }
                stats.groupCount += groupsPerRow
            }
        }
        for b in 0..<256 where byteCounts[b] > 0 {
            stats.histogram[b & 0xF] += byteCounts[b]
            stats.histogram[b >> 4] += byteCounts[b]
        }
        return stats
    }
}

/// Scale statistics: every scale must be finite and strictly positive.
public struct ScaleStats: Sendable, Equatable {
    public var count = 0
    public var nonFinite = 0
    public var nonPositive = 0
    /// The first offending element (flat index) and its value.
    public var firstBad: (index: Int, value: Float)?
    public var minimum = Float.infinity
    public var maximum = -Float.infinity

    public init() {}

    public static func == (a: ScaleStats, b: ScaleStats) -> Bool {
        a.count == b.count && a.nonFinite == b.nonFinite && a.nonPositive == b.nonPositive
            && a.firstBad?.index == b.firstBad?.index && a.minimum == b.minimum && a.maximum == b.maximum
    }

    public var badCount: Int { nonFinite + nonPositive }

    /// Scans scales stored as BF16, F16 or F32 (other dtypes hold no scales and count as all bad).
    public static func scan(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> ScaleStats {
        switch dtype {
        case .bf16: return scanBF16(bytes)
        case .f16: return scanValues(count: bytes.count / 2) { Float(Float16(bitPattern: bytes.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self))) }
        case .f32: return scanValues(count: bytes.count / 4) { Float(bitPattern: bytes.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
        default:
            var s = ScaleStats()
            s.count = bytes.count / max(1, dtype.byteWidth)
            s.nonFinite = s.count
            if s.count > 0 { s.firstBad = (0, .nan) }
            return s
        }
    }

    static func scanValues(count: Int, _ value: (Int) -> Float) -> ScaleStats {
        var s = ScaleStats()
        s.count = count
        for i in 0..<count {
            let v = value(i)
            if v.isFinite && v > 0 {
                s.minimum = min(s.minimum, v)
                s.maximum = max(s.maximum, v)
                continue
            }
            if v.isFinite { s.nonPositive += 1 } else { s.nonFinite += 1 }
            if s.firstBad == nil { s.firstBad = (i, v) }
        }
        return s
    }

    /// Scans BF16 scales. Positive finite BF16 values order like their bit patterns, so the range is
    /// tracked on integers and converted once.
    public static func scanBF16(_ bytes: UnsafeRawBufferPointer) -> ScaleStats {
        var s = ScaleStats()
        s.count = bytes.count / 2
        var lo = UInt16.max
        var hi = UInt16.min
        for i in 0..<s.count {
            let bits = UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            if BFloat16Bits.isFinitePositive(bits) {
                lo = min(lo, bits)
                hi = max(hi, bits)
                continue
            }
            let v = BFloat16Bits.toFloat(bits)
            if v.isFinite { s.nonPositive += 1 } else { s.nonFinite += 1 }
            if s.firstBad == nil { s.firstBad = (i, v) }
        }
        if lo <= hi {
            s.minimum = BFloat16Bits.toFloat(lo)
            s.maximum = BFloat16Bits.toFloat(hi)
        }
        return s
    }
}

/// The two values of a compressed-tensors `weight_shape` record (`[out, in]`, stored as I32 or I64).
public enum WeightShapeRecord {
    /// nil when the record is not two I32 or I64 values.
    public static func values(_ bytes: UnsafeRawBufferPointer, dtype: DType) -> [Int]? {
        switch dtype {
        case .i64 where bytes.count == 16:
            return (0..<2).map { Int(Int64(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
        case .i32 where bytes.count == 8:
            return (0..<2).map { Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
        default:
            return nil
        }
    }
}
