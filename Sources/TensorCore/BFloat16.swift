/// BF16 ⇄ Float bit conversions. BF16 is the upper half of an IEEE float32.
public enum BFloat16Bits {
    @inlinable
    public static func toFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Round to nearest even, as PyTorch converts float32 to bfloat16; NaN stays NaN.
    @inlinable
    public static func fromFloat(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        if value.isNaN { return UInt16(truncatingIfNeeded: (bits >> 16) | 0x0040) }
        let lsb = (bits >> 16) & 1
        let rounded = bits &+ 0x7FFF &+ lsb
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// Whether a BF16 value is finite and strictly positive (subnormals count as positive).
    @inlinable
    public static func isFinitePositive(_ bits: UInt16) -> Bool {
        bits & 0x8000 == 0 && bits & 0x7FFF != 0 && bits & 0x7F80 != 0x7F80
    }
}
