@testable import Forward
import TensorCore
import TestSupport
import Testing

/// The C kernels (Sources/CKernels through `Kernels`) against their portable path and the Swift kernels they
/// replaced: the portable and AVX2 levels give the same bits, and every level (the fused multiply-add one included)
/// stays within ckernels.h's bound of the exact product, for token counts around the C code's blocking (four rows,
/// two rows × two tokens, one row × three or four tokens) and row ranges that start and end off that blocking.
@Suite("C kernels chosen by CPU features")
struct CKernelTests {
    /// Random BF16 bytes (values in ±`magnitude`).
    static func bf16Bytes(_ count: Int, magnitude: Float, using rng: inout some RandomNumberGenerator) -> [UInt8] {
        (0..<count).flatMap { _ -> [UInt8] in
            let b = BFloat16Bits.fromFloat(Float.random(in: -magnitude...magnitude, using: &rng))
            return [UInt8(b & 0xFF), UInt8(b >> 8)]
        }
    }

    /// The largest difference between two results and its index, or nil when they are bit-identical.
    static func firstDifference(_ a: [Float], _ b: [Float]) -> (index: Int, difference: Float)? {
        guard zip(a, b).contains(where: { $0.bitPattern != $1.bitPattern }) else { return nil }
        let worst = zip(a, b).enumerated().max { abs($0.element.0 - $0.element.1) < abs($1.element.0 - $1.element.1) }!
        return (worst.offset, abs(worst.element.0 - worst.element.1))
    }

    /// `FusedKernels.rows` at `level` (through `Kernels`) and the Swift reference over rows `range`.
    static func products(_ w: WeightMatrix, _ range: Range<Int>, x: [Float], m: Int, level: Kernels.Level) -> (c: [Float], swift: [Float]) {
        var c = [Float](repeating: .nan, count: m * w.rows), swift = c
        x.withUnsafeBufferPointer { xp in
            c.withUnsafeMutableBufferPointer { yp in
                switch w.storage {
                case .plain(let view):
                    Kernels.bf16Rows(level: level, w: view.bytes.baseAddress!, rows: range, cols: w.cols, x: xp.baseAddress!, m: m, y: yp.baseAddress!, ldy: w.rows)
                case let .packed(codes, scales, group, _, _, _):
                    Kernels.int4Rows(
                        level: level, words: codes.bytes.baseAddress!, scales: scales.bytes.baseAddress!, rows: range, cols: w.cols,
                        group: group, x: xp.baseAddress!, m: m, y: yp.baseAddress!, ldy: w.rows)
                default: Issue.record(Comment(rawValue: "no C kernel for \(w.name)"))
                }
            }
            swift.withUnsafeMutableBufferPointer { FusedKernels.reference(w, range, x: xp.baseAddress!, m: m, y: $0.baseAddress!, ldy: w.rows) }
        }
        return (c, swift)
    }

    /// The levels that promise the portable path's bits.
    static let bitIdenticalLevels = Kernels.Level.allCases.filter { $0 <= .avx2 }

    @Test("INT4 and BF16 mat-vec: portable and AVX2 are bit-identical to each other and to the Swift kernels", arguments: [1, 2, 3, 4, 5])
    func matVec(tokens m: Int) throws {
        let rows = 39, cols = 512
        var rng = SystemRandomNumberGenerator()
        let bf16 = Self.bf16Bytes(rows * cols, magnitude: 1, using: &rng)
        let codes = (0..<(rows * cols / 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let (plainView, b1) = KernelTests.stored(bf16, dtype: .bf16, shape: [rows, cols])
        let (codeView, b2) = KernelTests.stored(codes, dtype: .i32, shape: [rows, cols / 8])
        defer { b1.deallocate(); b2.deallocate() }
        var matrices = [WeightMatrix(name: "bf16", rows: rows, cols: cols, storage: .plain(plainView))]
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        for group in [8, 32, 128] {
            let (scaleView, b) = KernelTests.stored(Self.bf16Bytes(rows * cols / group, magnitude: 0.1, using: &rng), dtype: .bf16, shape: [rows, cols / group])
            buffers.append(b)
            matrices.append(WeightMatrix(
                name: "int4 group \(group)", rows: rows, cols: cols,
                storage: .packed(codes: codeView, scales: scaleView, groupSize: group, bits: 4, dequant: .exact, highFirst: false)))
        }
        // Activations with a wide range, so a different order or a fused multiply-add would show.
        let x = (0..<(m * cols)).map { _ in Float.random(in: -2...2, using: &rng) * [Float(1), 1e-3, 1e3].randomElement(using: &rng)! }
        for matrix in matrices {
            #expect(FusedKernels.supports(matrix))
            for range in [0..<rows, 3..<37, 5..<6] {
                let portable = Self.products(matrix, range, x: x, m: m, level: .portable)
                for level in Self.bitIdenticalLevels {
                    let (c, swift) = Self.products(matrix, range, x: x, m: m, level: level)
                    if let d = Self.firstDifference(c, portable.c) {
                        Issue.record(Comment(rawValue: "\(matrix.name) rows \(range) \(level) vs portable: largest difference \(d.difference) at [\(d.index / rows), \(d.index % rows)]"))
                    }
                    if let d = Self.firstDifference(c, swift) {
                        Issue.record(Comment(rawValue: "\(matrix.name) rows \(range) \(level) vs Swift: largest difference \(d.difference) at [\(d.index / rows), \(d.index % rows)]"))
                    }
                    // Rows outside the range are left alone.
                    #expect((0..<m).allSatisfy { t in (0..<rows).allSatisfy { range.contains($0) || c[t * rows + $0].isNaN } })
                }
            }
        }
    }

    /// ckernels.h's bound, relative to Σ|w·x|: γ(cols/8 + 16) = n·2⁻²⁴ / (1 − n·2⁻²⁴).
    static func bound(cols: Int) -> Double {
        let n = Double(cols / 8 + 16), u = 0x1p-24
        return n * u / (1 - n * u)
    }

    /// The largest error of `y` (tokens × rows, only rows `range` written) against the exact float64 product of the
    /// decoded weights `w` (rows × `cols`) and `x`, in units of `bound`·Σ|w·x| (of |y| where Σ|w·x| is 0), with
    /// where it is; every row outside `range` is expected to be still NaN.
    static func worstError(
        _ y: [Float], w: [Float], x: [Float], cols: Int, range: Range<Int>, bound: Double, label: String
    ) -> (ratio: Double, at: String) {
        let rows = w.count / cols, m = x.count / cols
        var worst = (ratio: 0.0, at: "nothing")
        for t in 0..<m {
            for r in 0..<rows {
                let got = y[t * rows + r]
                guard range.contains(r) else {
                    #expect(got.isNaN, "\(label): row \(r) outside \(range) was written")
                    continue
                }
                var exact = 0.0, magnitude = 0.0
                for k in 0..<cols {
                    let p = Double(w[r * cols + k]) * Double(x[t * cols + k])
                    exact += p
                    magnitude += abs(p)
                }
                let ratio = magnitude > 0 ? abs(Double(got) - exact) / magnitude / bound : abs(Double(got))
                if ratio > worst.ratio { worst = (ratio, "\(label), token \(t) of \(m), row \(r): \(got) vs \(exact), Σ|w·x| \(magnitude)") }
            }
        }
        return worst
    }

    @Test("every level, AVX2 + FMA and AVX-512 included, is within γ(cols/8 + 16)·Σ|w·x| of the exact product (random shapes, 1–6 tokens)")
    func fmaBound() throws {
        var rng = SeededGenerator(seed: 2026)
        // Shapes: random ones (row counts off every tiling, groups 8…128, BF16 widths that are not a multiple of 16),
        // activations too large for the kernel's stack buffer (m · cols > 8,192), and the AVX-512 level's edges: BF16
        // tails of 8, 16 and 24 columns after blocks of 32, more than 16 groups with a partial last batch of scales.
        var shapes: [(rows: Int, cols: Int, group: Int, m: Int)] = [
            (5, 4096, 32, 3), (7, 2048, 128, 6), (1, 16, 16, 1), (5, 40, 8, 4), (2, 48, 16, 1), (3, 1112, 8, 2), (6, 1120, 32, 1), (3, 1088, 64, 2),
        ]
        for _ in 0..<40 {
            let group = [8, 16, 32, 64, 128].randomElement(using: &rng)!
            shapes.append((Int.random(in: 1...23, using: &rng), group * Int.random(in: 1...9, using: &rng), group, Int.random(in: 1...6, using: &rng)))
        }
        var worst = (ratio: 0.0, at: "nothing")
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        for (rows, cols, group, m) in shapes {
            let bf16 = Self.bf16Bytes(rows * cols, magnitude: 1, using: &rng)
            let codes = (0..<(rows * cols / 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let scales = Self.bf16Bytes(rows * cols / group, magnitude: 0.1, using: &rng)
            let (plainView, b1) = KernelTests.stored(bf16, dtype: .bf16, shape: [rows, cols])
            let (codeView, b2) = KernelTests.stored(codes, dtype: .i32, shape: [rows, cols / 8])
            let (scaleView, b3) = KernelTests.stored(scales, dtype: .bf16, shape: [rows, cols / group])
            buffers += [b1, b2, b3]
            let matrices = [
                WeightMatrix(name: "bf16", rows: rows, cols: cols, storage: .plain(plainView)),
                WeightMatrix(name: "int4 group \(group)", rows: rows, cols: cols,
                             storage: .packed(codes: codeView, scales: scaleView, groupSize: group, bits: 4, dequant: .exact, highFirst: false)),
            ]
            // Activations over six decades, so that a wrong order or a lost term would show.
            let x = (0..<(m * cols)).map { _ in Float.random(in: -2...2, using: &rng) * [Float(1), 1e-3, 1e3].randomElement(using: &rng)! }
            let lower = Int.random(in: 0..<rows, using: &rng)
            let range = lower..<Int.random(in: (lower + 1)...rows, using: &rng)
            for matrix in matrices {
                let w = matrix.all()  // exact: BF16 values, (code − 8) · scale
                for level in Kernels.Level.allCases {
                    let (c, _) = Self.products(matrix, range, x: x, m: m, level: level)
                    let error = Self.worstError(c, w: w, x: x, cols: cols, range: range, bound: Self.bound(cols: cols),
                                                label: "\(matrix.name) \(rows)×\(cols) \(level)")
                    if error.ratio > worst.ratio { worst = error }
                }
            }
        }
        #expect(worst.ratio <= 1, "largest error \(worst.ratio) of the bound: \(worst.at)")
    }

    @Test("the C heap takes the settings that keep freed memory (glibc)")
    func keepFreedMemory() {
        #if canImport(Glibc)
        #expect(Kernels.keepFreedMemory(), "mallopt refused M_MMAP_MAX = 0 or M_TRIM_THRESHOLD = INT_MAX")
        #endif
    }

    @Test("the forward pass's fused product is the dispatched C kernel")
    func fusedUsesKernels() throws {
        let rows = 8, cols = 64
        var rng = SystemRandomNumberGenerator()
        let (view, b) = KernelTests.stored(Self.bf16Bytes(rows * cols, magnitude: 1, using: &rng), dtype: .bf16, shape: [rows, cols])
        defer { b.deallocate() }
        let w = WeightMatrix(name: "bf16", rows: rows, cols: cols, storage: .plain(view))
        let x = (0..<cols).map { _ in Float.random(in: -1...1, using: &rng) }
        var y = [Float](repeating: 0, count: rows)
        x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { FusedKernels.rows(w, 0..<rows, x: xp.baseAddress!, m: 1, y: $0.baseAddress!, ldy: rows) } }
        #expect(y == Self.products(w, 0..<rows, x: x, m: 1, level: Kernels.active).c)
    }

    @Test("BF16 to float32: every bit pattern, unaligned, odd counts, at every level")
    func bf16Conversion() throws {
        let count = 65536 + 3
        // One byte of offset makes the source unaligned.
        var bytes: [UInt8] = [0xAA]
        for i in 0..<count { bytes += [UInt8(i & 0xFF), UInt8((i >> 8) & 0xFF)] }
        let expected = (0..<count).map { BFloat16Bits.toFloat(UInt16(truncatingIfNeeded: $0)) }
        for level in Kernels.Level.allCases {
            for n in [count, 7, 9, 0] {
                var out = [Float](repeating: 1, count: count)
                bytes.withUnsafeBytes { src in
                    out.withUnsafeMutableBufferPointer { Kernels.bf16ToFloat(level: level, src.baseAddress! + 1, count: n, into: $0.baseAddress!) }
                }
                let wrong = (0..<n).first { out[$0].bitPattern != expected[$0].bitPattern }
                #expect(wrong == nil, "\(level): element \(wrong ?? 0) is \(out[wrong ?? 0]), expected \(expected[wrong ?? 0])")
                #expect(out[n...].allSatisfy { $0 == 1 }, "\(level): nothing written past \(n) values")
            }
        }
    }

    @Test("INT4 tile dequantization: every level equals (code − 8) · scale, and the decode path uses it")
    func int4Dequant() throws {
        let rows = 9, cols = 256
        var rng = SystemRandomNumberGenerator()
        let codes = (0..<(rows * cols / 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let (codeView, b1) = KernelTests.stored(codes, dtype: .i32, shape: [rows, cols / 8])
        defer { b1.deallocate() }
        for group in [8, 32, 256] {
            let scaleBytes = Self.bf16Bytes(rows * cols / group, magnitude: 0.1, using: &rng)
            let (scaleView, b2) = KernelTests.stored(scaleBytes, dtype: .bf16, shape: [rows, cols / group])
            defer { b2.deallocate() }
            func expected(_ r: Int, _ c: Int) -> Float {
                let nibble = (codes[r * cols / 2 + c / 2] >> (4 * UInt8(c % 2))) & 0xF
                let s = BFloat16Bits.toFloat(UInt16(scaleBytes[2 * (r * cols / group + c / group)]) | UInt16(scaleBytes[2 * (r * cols / group + c / group) + 1]) << 8)
                return (Float(nibble) - 8) * s
            }
            let range = 2..<7
            for level in Kernels.Level.allCases {
                var out = [Float](repeating: .nan, count: range.count * cols)
                out.withUnsafeMutableBufferPointer {
                    Kernels.int4DequantRows(
                        level: level, words: codeView.bytes.baseAddress!, scales: scaleView.bytes.baseAddress!, rows: range, cols: cols,
                        group: group, into: $0.baseAddress!)
                }
                let wrong = (0..<out.count).first { out[$0].bitPattern != expected(range.lowerBound + $0 / cols, $0 % cols).bitPattern }
                #expect(wrong == nil, "\(level) group \(group): element \(wrong ?? 0) is \(out[wrong ?? 0])")
            }
            let w = WeightMatrix(name: "int4", rows: rows, cols: cols, storage: .packed(codes: codeView, scales: scaleView, groupSize: group, bits: 4, dequant: .exact, highFirst: false))
            let all = w.all()
            #expect((0..<all.count).allSatisfy { all[$0].bitPattern == expected($0 / cols, $0 % cols).bitPattern }, "decodeRows, group \(group)")
        }
    }

    @Test("K2PACK_KERNELS names a level (lowered to the CPU's best), swift the Swift kernels; anything else means the best level")
    func environment() {
        #expect(Kernels.level(environment: "portable") == .portable)
        #expect(Kernels.level(environment: nil) == Kernels.best)
        #expect(Kernels.level(environment: "avx2") == min(.avx2, Kernels.best))
        #expect(Kernels.level(environment: "avx2fma") == min(.avx2fma, Kernels.best))
        #expect(Kernels.level(environment: "avx512") == Kernels.best)
        #expect(Kernels.level(environment: "swift") == Kernels.best)
        #expect(Kernels.level(environment: "AVX2") == Kernels.best)
        #expect(Kernels.Level.allCases.map(\.description) == ["portable", "avx2", "avx2fma", "avx512"])
        // Asking for more than the CPU has runs what it has (the C side lowers too).
        for level in Kernels.Level.allCases { #expect(Kernels.usable(level) == min(level, Kernels.best)) }
        #expect(Kernels.swiftReference(environment: "swift") && !Kernels.swiftReference(environment: "portable") && !Kernels.swiftReference(environment: nil))
    }
}
