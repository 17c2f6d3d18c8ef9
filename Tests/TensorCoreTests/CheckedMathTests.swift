import TensorCore
import Testing

@Suite("checked size arithmetic")
struct CheckedMathTests {
    @Test("products overflow to nil, never trap")
    func products() {
        #expect(CheckedMath.product([7168, 2048]) == 14_680_064)
        #expect(CheckedMath.product([]) == 1)
        #expect(CheckedMath.product([1 << 32, 1 << 32]) == nil)
        #expect(CheckedMath.product([-1, 2]) == nil)
        #expect(CheckedMath.byteCount(shape: [1 << 62], dtype: .f32) == nil)
        #expect(CheckedMath.byteCount(shape: [3, 5], dtype: .bf16) == 30)
    }

    @Test("formats shapes and sizes")
    func formatting() {
        #expect(formatShape([7168, 64]) == "[7168, 64]")
        #expect(formatBytes(595_148_192_736) == "554.27 GiB")
        #expect(formatBytes(12) == "12 B")
    }
}
