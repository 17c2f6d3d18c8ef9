import PackFormat
import Testing

/// Reference values from the xxhash Python package (the C library).
let xxhashVectors: [([UInt8], UInt64, UInt64)] = [
        ([], 0, 0xEF46_DB37_51D8_E999),
        (Array("a".utf8), 0, 0xD24E_C4F1_A98C_6E5B),
        (Array("abc".utf8), 0, 0x44BC_2CF5_AD77_0999),
        (Array("abc".utf8), 1, 0xBEA9_CA81_9932_8908),
        (Array("0123456789abcdef0123456789abcdef0".utf8), 0, 0xE876_84F0_8D6D_0816),
    (Array((0..<1280).map { UInt8($0 % 256) }), 0, 0xAFC1_84AD_7938_A354),
]

@Suite("xxHash64")
struct XXHash64Tests {
    @Test("matches the reference library, whole and in pieces", arguments: xxhashVectors)
    func vectors(_ bytes: [UInt8], _ seed: UInt64, _ expected: UInt64) {
        #expect(bytes.withUnsafeBytes { XXHash64.hash($0, seed: seed) } == expected)
        for split in [1, 7, 31, 32, 33] where split < bytes.count {
            var h = XXHash64(seed: seed)
            bytes.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let end = min(raw.count, offset + split)
                    h.update(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                    offset = end
                }
            }
            #expect(h.finalize() == expected, "pieces of \(split)")
        }
    }
}
