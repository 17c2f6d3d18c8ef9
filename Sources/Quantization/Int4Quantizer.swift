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
        public var description: String {
            switch self {
            case let .notFinite(column, bits):
                "value at column \(column) is \(BFloat16Bits.toFloat(bits)) (bf16 0x\(String(bits, radix: 16, uppercase: true))): NaN and infinity cannot be quantized"
            }
        }
    }

    /// Quantizes one row of BF16 bits (length a multiple of `groupSize`, `groupSize` a multiple of 8) into
    /// packed words (`row.count / 8`) and BF16 scale bits (`row.count / groupSize`).
    public static func quantizeRow(
        _ row: UnsafeBufferPointer<UInt16>, groupSize: Int, words: UnsafeMutableBufferPointer<UInt32>,
        scales: UnsafeMutableBufferPointer<UInt16>
    ) throws(Failure) {
        precondition(groupSize % 8 == 0 && row.count % groupSize == 0, "quantizeRow: the group must divide the row and hold whole words")
        for g in 0..<(row.count / groupSize) {
            let start = g * groupSize
            var lo: Float = 0, hi: Float = 0
            for c in start..<(start + groupSize) {
                let bits = row[c]
                guard bits & 0x7F80 != 0x7F80 else { throw .notFinite(column: c, bits: bits) }
                let v = BFloat16Bits.toFloat(bits)
                lo = min(lo, v)
                hi = max(hi, v)
            }
            let amax = max(-lo, hi)
            var scaleBits = BFloat16Bits.fromFloat(amax / 7.5)
            if scaleBits & 0x7FFF == 0 { scaleBits = zeroScaleGuard }
            scales[g] = scaleBits
            let scale = BFloat16Bits.toFloat(scaleBits)
            for w in 0..<(groupSize / 8) {
                var word: UInt32 = 0
                for k in 0..<8 {
                    let c = start + 8 * w + k
                    let x = BFloat16Bits.toFloat(BFloat16Bits.fromFloat(BFloat16Bits.toFloat(row[c]) / scale))
                    let q = min(max(x, -8), 7).rounded(.toNearestOrEven)
                    word |= UInt32(Int(q) + 8) << UInt32(4 * k)
                }
                words[start / 8 + w] = word
            }
        }
    }

    /// Dequantizes one packed row: `q · scale` in float32 (exact), or that product rounded to BF16.
    public static func dequantizeRow(
        words: UnsafeBufferPointer<UInt32>, scales: UnsafeBufferPointer<UInt16>, groupSize: Int, exact: Bool,
        into out: UnsafeMutableBufferPointer<Float>
    ) {
        for c in 0..<out.count {
            let q = Float(Int((words[c / 8] >> UInt32(4 * (c % 8))) & 0xF) - 8)
            let v = q * BFloat16Bits.toFloat(scales[c / groupSize])
            out[c] = exact ? v : BFloat16Bits.toFloat(BFloat16Bits.fromFloat(v))
        }
    }
}
