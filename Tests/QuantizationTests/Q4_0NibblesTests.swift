import Testing

@testable import Quantization

@Suite("Q4_0 nibble order")
struct Q4_0NibblesTests {
    /// Q4_0's qs built element by element from compressed-tensors codes: qs[j] = n[j] | n[j+16] << 4.
    static func reference(_ codes: [Int8]) -> [UInt8] {
        (0..<16).map { j in PackedInt4.nibble(codes[j]) | PackedInt4.nibble(codes[j + 16]) << 4 }
    }

    static func words(_ bytes: [UInt8]) -> (UInt64, UInt64) {
        func load(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }
        return (load(0), load(8))
    }

    static func bytes(_ lo: UInt64, _ hi: UInt64) -> [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: lo >> (8 * UInt64($0))) } + (0..<8).map { UInt8(truncatingIfNeeded: hi >> (8 * UInt64($0))) }
    }

    @Test("a compressed-tensors group's 16 bytes become Q4_0's qs (n[j] | n[j+16] << 4), and back")
    func permutation() {
        var generator = SystemRandomNumberGenerator()
        var groups: [[Int8]] = [(0..<32).map { Int8($0 % 16 - 8) }, [Int8](repeating: -8, count: 32), [Int8](repeating: 7, count: 32)]
        for _ in 0..<200 { groups.append((0..<32).map { _ in Int8.random(in: -8...7, using: &generator) }) }
        for codes in groups {
            let packed = PackedInt4.pack(codes).flatMap { w in (0..<4).map { UInt8(truncatingIfNeeded: w >> (8 * UInt32($0))) } }
            let (lo, hi) = Self.words(packed)
            let (a, b) = Q4_0Nibbles.q4_0(fromPacked: lo, hi)
            #expect(Self.bytes(a, b) == Self.reference(codes))
            let (c, d) = Q4_0Nibbles.packed(fromQ4_0: a, b)
            #expect(Self.bytes(c, d) == packed)
        }
        #expect(Q4_0Nibbles.packedBytes == 16 && Q4_0Nibbles.blockBytes == 18)
    }

    @Test("F16 holds a scale exactly from 2⁻²⁴ steps up to 65504 (and ±infinity); finer, larger and NaN are not exact")
    func exactness() {
        for s: Float in [0, -0.0, 1, 0.5, 65504, 0x1p-14, 0x1p-24, 3 * 0x1p-24, 0.0078125, 1.5, .infinity] { #expect(Q4_0Nibbles.isExactInF16(s), "\(s)") }
        for s: Float in [0x1p-30, 65536, 1e-9, .nan, 0x1p-24 * 1.5, 1 + 0x1p-12] { #expect(!Q4_0Nibbles.isExactInF16(s), "\(s)") }
    }

    @Test("f16Exact(bf16:) agrees with Float16 conversion on all 65,536 BF16 patterns")
    func bf16ToF16() {
        var exactCount = 0
        for bits in 0...UInt16.max {
            let value = Float(bitPattern: UInt32(bits) << 16)
            let viaFloat = Float16(value)
            let exact = Float(viaFloat) == value
            let fast = Q4_0Nibbles.f16Exact(bf16: bits)
            #expect((fast != nil) == exact, "bits \(String(bits, radix: 16))")
            if let fast, exact {
                #expect(fast == viaFloat.bitPattern, "bits \(String(bits, radix: 16))")
                exactCount += 1
            }
        }
        #expect(exactCount > 0)
    }
}
