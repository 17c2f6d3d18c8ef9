/// One INT4 group of 32 codes as compressed-tensors packs it and as ggml's Q4_0 block holds it: the same
/// nibbles (`q + 8`), in another order.
///
/// compressed-tensors (`PackedInt4`): element k of the group in bits `4·(k mod 8)` of little-endian word `k / 8`,
/// so as 16 bytes, byte b holds element 2b (low nibble) and 2b+1 (high). Q4_0's `qs[16]`: byte j holds element j
/// (low nibble) and element j+16 (high). Each function works on the 16 bytes as two little-endian `UInt64`s
/// (bytes 0–7, bytes 8–15): a few shifts and masks, no per-element loop, so a converter moves nibbles at memory
/// speed.
public enum Q4_0Nibbles {
    /// Codes per group and per Q4_0 block.
    public static let groupSize = 32
    /// Bytes of one group's codes (`groupSize / PackedInt4.codesPerWord` words of 4 bytes).
    public static let packedBytes = groupSize / PackedInt4.codesPerWord * 4
    /// Bytes of one Q4_0 block: the f16 scale, then `qs`.
    public static let blockBytes = 2 + packedBytes

    /// compressed-tensors' 16 bytes (as two words) → Q4_0's `qs` (as two words).
    @inlinable @inline(__always)
    public static func q4_0(fromPacked lo: UInt64, _ hi: UInt64) -> (UInt64, UInt64) {
        let m: UInt64 = 0x0F0F_0F0F_0F0F_0F0F
        // Byte b of `even`: qs[2b] = n[2b] | n[16+2b] << 4; of `odd`: qs[2b+1] = n[2b+1] | n[17+2b] << 4.
        let even = (lo & m) | ((hi & m) << 4)
        let odd = ((lo >> 4) & m) | (((hi >> 4) & m) << 4)
        return (spread(UInt32(truncatingIfNeeded: even)) | spread(UInt32(truncatingIfNeeded: odd)) << 8,
                spread(UInt32(truncatingIfNeeded: even >> 32)) | spread(UInt32(truncatingIfNeeded: odd >> 32)) << 8)
    }

    /// Q4_0's `qs` (as two words) → compressed-tensors' 16 bytes (as two words): the inverse of `q4_0(fromPacked:)`.
    @inlinable @inline(__always)
    public static func packed(fromQ4_0 lo: UInt64, _ hi: UInt64) -> (UInt64, UInt64) {
        let m: UInt64 = 0x0F0F_0F0F_0F0F_0F0F
        let even = UInt64(compact(lo)) | UInt64(compact(hi)) << 32
        let odd = UInt64(compact(lo >> 8)) | UInt64(compact(hi >> 8)) << 32
        return ((even & m) | ((odd & m) << 4), ((even >> 4) & m) | (((odd >> 4) & m) << 4))
    }

    /// The 4 bytes of `v` to bytes 0, 2, 4, 6 of the result (the others zero).
    @inlinable @inline(__always)
    static func spread(_ v: UInt32) -> UInt64 {
        var x = UInt64(v)
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF
        return x
    }

    /// Bytes 0, 2, 4, 6 of `v` as 4 bytes: the inverse of `spread`.
    @inlinable @inline(__always)
    static func compact(_ v: UInt64) -> UInt32 {
        var x = v & 0x00FF_00FF_00FF_00FF
        x = (x | (x >> 8)) & 0x0000_FFFF_0000_FFFF
        x = (x | (x >> 16)) & 0x0000_0000_FFFF_FFFF
        return UInt32(truncatingIfNeeded: x)
    }

    /// The F16 bits holding exactly the value of the BF16 `bits`, or nil when F16 cannot hold it (NaN, a finite
    /// magnitude above 65504, or a value below 2⁻¹⁴ that is not a multiple of 2⁻²⁴). Bit operations only: the
    /// same answer as `isExactInF16` and `Float16(_:)` (checked for all 65,536 patterns), without a float
    /// conversion per group.
    @inlinable @inline(__always)
    public static func f16Exact(bf16 bits: UInt16) -> UInt16? {
        let sign = bits & 0x8000
        let exponent = Int((bits >> 7) & 0xFF)
        let mantissa = bits & 0x7F
        if exponent == 0xFF { return mantissa == 0 ? sign | 0x7C00 : nil }
        if exponent == 0 { return mantissa == 0 ? sign : nil }
        let e = exponent - 127
        if e > 15 { return nil }
        if e >= -14 { return sign | UInt16(e + 15) << 10 | mantissa << 3 }
        // F16 subnormal: k · 2⁻²⁴ with k = (128 + m) · 2^(e − 7 + 24).
        let significand = UInt16(128) | mantissa
        let shift = e + 17
        if shift >= 0 { return sign | significand << UInt16(shift) }
        if -shift >= 8 { return nil }
        let dropped = UInt16(-shift)
        return significand & ((1 << dropped) - 1) == 0 ? sign | significand >> dropped : nil
    }

    /// Whether a scale survives as ggml's f16 `d` exactly: f16→f32(f16(s)) == s. False for NaN and for values F16
    /// rounds (finite |s| > 65504, or not a multiple of 2⁻²⁴ below 2⁻¹⁴); ±infinity survives.
    @inlinable
    public static func isExactInF16(_ s: Float) -> Bool {
        Float(Float16(s)) == s
    }
}
