import TensorCore

/// The compressed-tensors reference quantizer for symmetric INT4 with group scales (the `minmax` observer,
/// round to nearest), bit for bit, on BF16 weights:
///
///     amax  = max(|min(w, 0)|, max(w, 0))              per group of `groupSize` along a row (exact in BF16)
///     scale = bf16(f32(amax) / 7.5)                      (a zero scale becomes the zero guard)
///     x     = bf16(f32(w) / f32(scale))                  (the quotient is rounded to BF16 first)
///     q     = round_half_even(clamp(x, −8, 7))           (clamp before rounding)
///
/// and its inverse, `q · scale` exactly in float32 or rounded to BF16 as compressed-tensors' decompressor does.
public enum Int4Quantizer {
    /// What compressed-tensors 0.20 substitutes for a zero scale (an all-zero group): BF16's epsilon, 2⁻⁷.
    public static let zeroScaleGuard: UInt16 = BFloat16Bits.fromFloat(0x1p-7)

    /// Why a row cannot be quantized.
    public enum Failure: Error, Equatable, Sendable, CustomStringConvertible {
        /// A NaN or infinity at `column` of the row: it would become a silent code.
        case notFinite(column: Int, bits: UInt16)
        /// The column of the row where the problem is.
        public var column: Int {
            switch self {
            case let .notFinite(column, _): column
            }
        }

        public var description: String {
            switch self {
            case let .notFinite(column, bits):
                "value at column \(column) is \(BFloat16Bits.toFloat(bits)) (bf16 0x\(String(bits, radix: 16, uppercase: true))): NaN and infinity cannot be quantized"
            }
        }
    }

    /// Quantizes one row of little-endian BF16 values (`row` holds 2 bytes per value, at any alignment: mapped
    /// tensor data need not be aligned; the count a multiple of `groupSize`, itself a multiple of 8) into packed
    /// words (`count / 8`) and BF16 scale bits (`count / groupSize`). Eight values at a time; every step is exact
    /// float32 arithmetic or an explicit round-to-nearest-even, so the result is the scalar rule's.
    public static func quantizeRow(
        _ row: UnsafeRawBufferPointer, groupSize: Int, words: UnsafeMutableBufferPointer<UInt32>,
        scales: UnsafeMutableBufferPointer<UInt16>
    ) throws(Failure) {
        let count = row.count / 2
        precondition(groupSize % 8 == 0 && count % groupSize == 0, "quantizeRow: the group must divide the row and hold whole words")
        let base = row.baseAddress!
        func value(_ c: Int) -> UInt16 { UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * c, as: UInt16.self)) }
        let magic = SIMD8<Float>(repeating: 12_582_912)  // 1.5·2²³
        for g in 0..<(count / groupSize) {
            let start = g * groupSize
            // amax = max(|min(w, 0)|, max(w, 0)) = max |w|: the largest magnitude's bits (finite BF16 order by
            // their low 15 bits); an exponent of all ones is NaN or infinity.
            var largest: UInt16 = 0
            for c in start..<(start + groupSize) { largest = max(largest, value(c) & 0x7FFF) }
            if largest >= 0x7F80 {
                let c = (start..<(start + groupSize)).first { value($0) & 0x7F80 == 0x7F80 }!
                throw .notFinite(column: c, bits: value(c))
            }
            var scaleBits = BFloat16Bits.fromFloat(BFloat16Bits.toFloat(largest) / 7.5)
            if scaleBits & 0x7FFF == 0 { scaleBits = zeroScaleGuard }
            scales[g] = scaleBits
            let scale = SIMD8<Float>(repeating: BFloat16Bits.toFloat(scaleBits))
            for c in stride(from: start, to: start + groupSize, by: 8) {
                let bits = SIMD8<UInt32>(truncatingIfNeeded: base.loadUnaligned(fromByteOffset: 2 * c, as: SIMD8<UInt16>.self)) &<< 16
                let x = roundedToBFloat16(unsafeBitCast(bits, to: SIMD8<Float>.self) / scale)
                // Round half to even by adding 1.5·2²³ (the float's low bits are then the integer's two's
                // complement; |x| stays far below 2²²), then clamp to [−8, 7]: for integers that is the same as
                // clamping first. q + 8 is the nibble.
                let r = unsafeBitCast(x + magic, to: SIMD8<UInt32>.self)
                var word: UInt32 = 0
                for k in 0..<8 {
                    let q = Int32(bitPattern: r[k] &- 0x4B40_0000)
                    word |= UInt32(truncatingIfNeeded: (q < -8 ? -8 : (q > 7 ? 7 : q)) + 8) << UInt32(4 * k)
                }
                words[c / 8] = word
            }
        }
    }

    /// Float32 → nearest BF16 (ties to even), as float32: finite inputs only.
    @inline(__always)
    static func roundedToBFloat16(_ v: SIMD8<Float>) -> SIMD8<Float> {
        let bits = unsafeBitCast(v, to: SIMD8<UInt32>.self)
        let lsb = (bits &>> 16) & 1
        return unsafeBitCast(((bits &+ 0x7FFF &+ lsb) &>> 16) &<< 16, to: SIMD8<Float>.self)
    }

    /// Dequantizes one packed row: `q · scale` in float32 (exact), or that product rounded to BF16. `words`
    /// (little-endian I32) and `scales` (little-endian BF16) are read at any alignment. Eight codes (one word) at a
    /// time; a nibble becomes a float by the 1.5·2²³ trick, with no conversion instruction.
    public static func dequantizeRow(
        words: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, groupSize: Int, exact: Bool,
        into out: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(out.count % 8 == 0 && groupSize % 8 == 0, "dequantizeRow: whole words and whole groups")
        let shifts = SIMD8<UInt32>(0, 4, 8, 12, 16, 20, 24, 28)
        let magic = SIMD8<Float>(repeating: 12_582_912 + 8)
        let target = UnsafeMutableRawPointer(out.baseAddress!)
        for w in 0..<(out.count / 8) {
            let word = UInt32(littleEndian: words.loadUnaligned(fromByteOffset: 4 * w, as: UInt32.self))
            let nibbles = (SIMD8<UInt32>(repeating: word) &>> shifts) & 0xF
            let q = unsafeBitCast(nibbles | 0x4B40_0000, to: SIMD8<Float>.self) - magic
            let scale = UInt16(littleEndian: scales.loadUnaligned(fromByteOffset: 2 * (8 * w / groupSize), as: UInt16.self))
            let v = q * SIMD8<Float>(repeating: BFloat16Bits.toFloat(scale))
            target.storeBytes(of: exact ? v : roundedToBFloat16(v), toByteOffset: 32 * w, as: SIMD8<Float>.self)
        }
    }
}
