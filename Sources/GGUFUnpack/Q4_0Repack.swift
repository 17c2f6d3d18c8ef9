import GGUF

/// ggml's Q4_0 blocks moved back into compressed-tensors' pack-quantized INT4 (group 32, symmetric), the inverse
/// of the lossless `--to gguf` repack (docs/reference gguf.md §4): no arithmetic on the weights.
///
/// A Q4_0 block is an f16 `d` and 16 bytes `qs`, byte j holding nibble n[j] low and n[j+16] high; the weight is
/// (n − 8)·d. compressed-tensors stores the same nibbles n = q + 8, element k of a group in bits 4·(k mod 8) of
/// little-endian I32 word k/8 (so byte b = n[2b] | n[2b+1] << 4), and the scale as BF16. Only a permutation of
/// nibbles, and `d` widened to float32 and narrowed to BF16, which must be exact.
public enum Q4_0Repack {
    public static let blockBytes = 18
    public static let groupSize = 32

    /// The BF16 bits of a Q4_0 `d` (f16 bits), or nil when compressed-tensors cannot hold it as it is: not finite,
    /// not positive, or not exactly representable in BF16.
    @inlinable
    public static func bf16Scale(_ d: UInt16) -> UInt16? {
        let value = GGUFDequantizer.halfToFloat(d)
        guard value.isFinite, value > 0 else { return nil }
        let bits = value.bitPattern
        guard bits & 0xFFFF == 0 else { return nil }
        return UInt16(truncatingIfNeeded: bits >> 16)
    }

    /// The f16 `d` bits of block `block` of `blocks`.
    @inlinable
    public static func scaleBits(_ blocks: UnsafeRawBufferPointer, block: Int) -> UInt16 {
        UInt16(littleEndian: blocks.loadUnaligned(fromByteOffset: block * blockBytes, as: UInt16.self))
    }

    /// The first block of `blocks` (`count` blocks) whose scale is refused, or nil.
    public static func firstBadScale(_ blocks: UnsafeRawBufferPointer, count: Int) -> Int? {
        for b in 0..<count where bf16Scale(scaleBits(blocks, block: b)) == nil { return b }
        return nil
    }

    /// Rewrites `count` blocks as compressed-tensors bytes: 16 bytes of packed nibbles per block into `codes`
    /// (the little-endian I32 words), and the BF16 scale (little-endian) into `scales`. The scales were checked.
    public static func repack(
        _ blocks: UnsafeRawBufferPointer, count: Int, codes: UnsafeMutableRawPointer, scales: UnsafeMutableRawPointer
    ) {
        for b in 0..<count {
            let base = b * blockBytes
            let d = scaleBits(blocks, block: b)
            let s = bf16Scale(d) ?? 0
            scales.storeBytes(of: s.littleEndian, toByteOffset: 2 * b, as: UInt16.self)
            let out = codes + 16 * b
            for j in 0..<16 {
                // Output byte j holds elements 2j (low) and 2j+1 (high).
                let lo = nibble(blocks, base: base, element: 2 * j)
                let hi = nibble(blocks, base: base, element: 2 * j + 1)
                out.storeBytes(of: lo | hi << 4, toByteOffset: j, as: UInt8.self)
            }
        }
    }

    /// Nibble of element `element` (0–31) of the Q4_0 block at `base`.
    @inline(__always)
    static func nibble(_ blocks: UnsafeRawBufferPointer, base: Int, element: Int) -> UInt8 {
        let byte = blocks[base + 2 + (element & 15)]
        return element < 16 ? byte & 0x0F : byte >> 4
    }
}
