import CKernels
import Foundation

/// The forward pass's hot loops in C (`Sources/CKernels`): a portable path and x86-64 variants chosen at run time
/// from the CPU's features. The portable and AVX2 INT4 / BF16 kernels give bit-identical results to each other and
/// to the Swift kernels they replaced (same float operations in the same order); the AVX2 + FMA and AVX-512 levels
/// fuse multiplies and adds and sum in another order, within |Δ| ≤ γ(cols/8 + 16) · Σ|w·x| of the exact product
/// (ckernels.h; `CKernelTests.fmaBound`). The ggml-block kernels (`ggmlRows`, ggml_kernels.h) promise
/// dequantize-then-dot up to rounding only. The only importer of CKernels.
public enum Kernels {
    /// A kernel level: the portable C path, or a variant needing the CPU features named.
    public enum Level: Int32, Sendable, CaseIterable, CustomStringConvertible, Comparable {
        /// Plain C, any CPU.
        case portable = 0
        /// AVX2, bit-identical to `portable`.
        case avx2 = 1
        /// AVX2 + FMA + F16C: fused multiply-add, within the bound above (and the ggml-block kernels' vector path).
        case avx2fma = 2
        /// AVX-512 F + BW + VL (and the features above): decoding's INT4 and BF16 products on 16-lane vectors, within
        /// the same bound; the prefill INT4 product on 16-lane vectors with the same bits as every level; everything
        /// else as at `avx2fma`.
        case avx512 = 3

        public var description: String {
            switch self {
            case .portable: return "portable"
            case .avx2: return "avx2"
            case .avx2fma: return "avx2fma"
            case .avx512: return "avx512"
            }
        }

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    /// Makes the C heap keep freed memory for later allocations (`ck_keep_freed_memory`), for a process that runs
    /// forward passes over many tokens: each layer's large buffers then reuse pages already touched instead of
    /// faulting in fresh ones. Process-wide; returns whether the C library took the settings.
    @discardableResult
    public static func keepFreedMemory() -> Bool { ck_keep_freed_memory() == 1 }

    /// The highest level this CPU supports.
    public static let best: Level = Level(rawValue: ck_best_level()) ?? .portable

    /// The level the forward pass uses: `best`, or the level the environment variable `K2PACK_KERNELS` names
    /// (`portable`, `avx2`, `avx2fma`, `avx512`; tests and benchmarks) lowered to `best`; any other value, or none, means
    /// `best`.
    public static let active: Level = level(environment: ProcessInfo.processInfo.environment["K2PACK_KERNELS"])

    /// The level an environment value asks for (see `active`).
    static func level(environment value: String?) -> Level {
        guard let asked = Level.allCases.first(where: { $0.description == value }) else { return best }
        return min(asked, best)
    }

    /// The level that runs when `level` is asked for: `level` lowered to `best` (the C side's one cached clamp,
    /// which the ggml-block kernels share).
    static func usable(_ level: Level) -> Level { Level(rawValue: ck_usable_level(level.rawValue)) ?? .portable }

    /// Whether `K2PACK_KERNELS` is `swift`: the fused few-token products then run the Swift kernels the C ones
    /// replaced (`FusedKernels.reference`, the portable path's bits; benchmarks' "before").
    static let swiftReference = swiftReference(environment: ProcessInfo.processInfo.environment["K2PACK_KERNELS"])

    static func swiftReference(environment value: String?) -> Bool { value == "swift" }

    /// `y[t·ldy + r] = Σ_c x[t·cols + c] · W[r, c]` for `rows` and tokens `0..<m`; W is INT4 pack-quantized
    /// (`words`: the matrix's I32 words, `scales`: its BF16 group scales), `cols % group == 0`, `group % 8 == 0`.
    static func int4Rows(
        level: Level = active, words: UnsafeRawPointer, scales: UnsafeRawPointer, rows: Range<Int>, cols: Int, group: Int,
        x: UnsafePointer<Float>, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        precondition(group > 0 && group % 8 == 0 && cols % group == 0, "Kernels.int4Rows: whole words and whole groups")
        ck_int4_matvec(level.rawValue, words, scales, rows.lowerBound, rows.upperBound, cols, group, x, m, y, ldy)
    }

    /// The same product for BF16 rows `w` (`cols % 8 == 0`).
    static func bf16Rows(
        level: Level = active, w: UnsafeRawPointer, rows: Range<Int>, cols: Int, x: UnsafePointer<Float>, m: Int,
        y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        precondition(cols % 8 == 0, "Kernels.bf16Rows: whole blocks of eight columns")
        ck_bf16_matvec(level.rawValue, w, rows.lowerBound, rows.upperBound, cols, x, m, y, ldy)
    }

    /// `count` BF16 values (unaligned little-endian bytes) to float32.
    static func bf16ToFloat(level: Level = active, _ src: UnsafeRawPointer, count: Int, into out: UnsafeMutablePointer<Float>) {
        ck_bf16_to_f32(level.rawValue, src, out, count)
    }

    /// Rows `rows` of an INT4 matrix (as for `int4Rows`) dequantized exactly into `out`, `cols` floats per row.
    static func int4DequantRows(
        level: Level = active, words: UnsafeRawPointer, scales: UnsafeRawPointer, rows: Range<Int>, cols: Int, group: Int,
        into out: UnsafeMutablePointer<Float>
    ) {
        precondition(group > 0 && group % 8 == 0 && cols % group == 0, "Kernels.int4DequantRows: whole words and whole groups")
        ck_int4_dequant_rows(level.rawValue, words, scales, rows.lowerBound, rows.upperBound, cols, group, out)
    }
}

extension Kernels {
    /// Whether `K2PACK_KERNELS` is `dequantize`: ggml-block matrices (GGUF) then go through the decode path
    /// (dequantize a block of rows, OpenBLAS) even for a few tokens (benchmarks' "before"). `swift` does the same,
    /// as there is no Swift ggml kernel.
    static let ggmlDequantize = ggmlDequantize(environment: ProcessInfo.processInfo.environment["K2PACK_KERNELS"])

    static func ggmlDequantize(environment value: String?) -> Bool { value == "dequantize" || value == "swift" }

    /// `y[t·ldy + r] = Σ_c x[t·cols + c] · W[r, c]` for `rows` and tokens `0..<m`, W stored as ggml blocks
    /// (`GGMLBlocks`); equal to dequantize-then-dot up to the order of float operations (ggml_kernels.h).
    static func ggmlRows(
        level: Level = active, _ w: GGMLBlocks, rows: Range<Int>, cols: Int, x: UnsafePointer<Float>, m: Int,
        y: UnsafeMutablePointer<Float>, ldy: Int
    ) {
        precondition(w.format.rowBytes(cols: cols) == w.rowBytes, "Kernels.ggmlRows: \(w.format) rows of \(cols) columns are not \(w.rowBytes) bytes")
        let status = ck_ggml_matvec(level.rawValue, w.format.rawValue, w.base, rows.lowerBound, rows.upperBound, cols, x, m, y, ldy)
        precondition(status == 0, "Kernels.ggmlRows: the C kernel refused \(w.format) with \(cols) columns (status \(status))")
    }
}
