import Quantization
import TensorCore
import Testing

@Suite("pack-quantized INT4")
struct PackedInt4Tests {
    @Test("packs the reference example: first element in the lowest nibble, offset binary")
    func referenceExample() {
        let codes: [Int8] = [5, 2, 0, -4, -4, -8, -7, -8]
        #expect(PackedInt4.pack(codes) == [0x0104_48AD])
        #expect(PackedInt4.unpack([0x0104_48AD]) == codes)
    }

    @Test("round-trips every code")
    func roundTrip() {
        let codes = (0..<64).map { Int8($0 % 16 - 8) }
        #expect(PackedInt4.unpack(PackedInt4.pack(codes)) == codes)
    }

    @Test("counts codes and all-zero groups")
    func stats() {
        // Two rows of 64 codes (two groups of 32 each); row 0 group 1 is all zero.
        var codes = [Int8](repeating: 3, count: 128)
        for i in 32..<64 { codes[i] = 0 }
        codes[64] = -8
        let words = PackedInt4.pack(codes)
        let stats = words.withUnsafeBytes { Int4CodeStats.scan($0, rows: 2, bytesPerRow: 32, groupSize: 32) }
        #expect(stats.groupCount == 4)
        #expect(stats.zeroGroupCount == 1)
        #expect(stats.histogram[0] == 1)  // −8
        #expect(stats.histogram[8] == 32)  // 0
        #expect(stats.histogram[11] == 95)  // 3
    }

    @Test("flags NaN, Inf, zero and negative BF16 scales, keeping the first")
    func scales() {
        let values: [UInt16] = [0x3C00, 0x7FC0, 0x0000, 0xBC00, 0x7F80, 0x0001]
        let stats = values.withUnsafeBytes { ScaleStats.scanBF16($0) }
        #expect(stats.count == 6)
        #expect(stats.nonFinite == 2)
        #expect(stats.nonPositive == 2)
        #expect(stats.firstBad?.index == 1)
        #expect(stats.minimum > 0 && stats.maximum == BFloat16Bits.toFloat(0x3C00))
    }

    @Test("BF16 conversion rounds to nearest even")
    func bf16() {
        #expect(BFloat16Bits.fromFloat(1.0) == 0x3F80)
        #expect(BFloat16Bits.fromFloat(Float(bitPattern: 0x3F80_8000)) == 0x3F80)  // tie → even
        #expect(BFloat16Bits.fromFloat(Float(bitPattern: 0x3F81_8000)) == 0x3F82)  // tie → even
        #expect(BFloat16Bits.fromFloat(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
        #expect(BFloat16Bits.fromFloat(.nan) & 0x7FC0 == 0x7FC0)
    }
}
