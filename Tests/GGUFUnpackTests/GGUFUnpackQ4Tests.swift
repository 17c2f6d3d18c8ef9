import GGUFUnpack
import Testing

/// Q4_0 → compressed-tensors INT4, block by block, against the two formats' definitions written out here.
@Suite("Q4_0 repack")
struct GGUFUnpackQ4Tests {
    @Test("nibbles: element k lands in bits 4·(k mod 8) of word k/8; the scale is d widened")
    func nibbleOrder() {
        // Nibbles n[k] = (7k + 3) mod 16: every position distinct enough to catch a swap.
        let n = (0..<32).map { UInt8((7 * $0 + 3) % 16) }
        var block: [UInt8] = [0x00, 0x3C]  // d = 1.0 (f16)
        for j in 0..<16 { block.append(n[j] | n[j + 16] << 4) }  // Q4_0: qs[j] = n[j] | n[j+16] << 4
        var codes = [UInt8](repeating: 0, count: 16), scales = [UInt8](repeating: 0, count: 2)
        block.withUnsafeBytes { b in
            codes.withUnsafeMutableBytes { c in
                scales.withUnsafeMutableBytes { s in Q4_0Repack.repack(b, count: 1, codes: c.baseAddress!, scales: s.baseAddress!) }
            }
        }
        for k in 0..<32 {
            let word = (0..<4).reduce(UInt32(0)) { $0 | UInt32(codes[4 * (k / 8) + $1]) << (8 * $1) }
            #expect(UInt8((word >> (4 * UInt32(k % 8))) & 0xF) == n[k], "element \(k)")
        }
        #expect(scales == [0x80, 0x3F], "BF16 1.0")
    }

    @Test("scales compressed-tensors holds: finite, positive, exact in BF16", arguments: [
        (UInt16(0x3C00), UInt16?(0x3F80)),  // 1.0
        (0x7BFF, nil),  // 65504 = 1.1111111111b·2^15: ten mantissa bits, BF16 has seven
        (0x0001, 0x3380),  // 2^-24, the smallest subnormal: exact
        (0x3C01, nil),  // 1 + 2^-10: not exact
        (0x0000, nil),  // +0
        (0x8000, nil),  // -0
        (0xBC00, nil),  // -1 (llama.cpp's quantizer makes negative d)
        (0x7C00, nil),  // +inf
        (0x7E00, nil),  // NaN
    ])
    func scales(d: UInt16, expected: UInt16?) {
        #expect(Q4_0Repack.bf16Scale(d) == expected)
    }
}
