@testable import Forward
import Foundation
import GGUF
@testable import GGUFModel
import Parity
import Testing
import TestSupport

/// The fused few-token kernels over ggml blocks (Sources/CKernels/ggml_kernels.c through `Kernels.ggmlRows`)
/// against their definition: dequantize the blocks with `GGUFDequantizer` (bit-exact with gguf-py), then dot in
/// float64. Every level (the plain C path below avx2fma), random and edge blocks, 1–4 tokens, row ranges inside
/// the matrix.
@Suite("ggml-block kernels")
struct GGMLKernelTests {
    /// Random blocks of `format` with finite scales (standard normal · `scale`, as f16), codes uniformly random.
    static func randomBlocks(_ format: GGMLBlocks.Format, rows: Int, cols: Int, scale: Float = 0.01, using rng: inout some RandomNumberGenerator) -> [UInt8] {
        let blocks = rows * cols / format.blockSize
        var bytes = (0..<(blocks * format.typeSize)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for b in 0..<blocks {
            for at in scaleOffsets(format) {
                let h = Float16(Float.random(in: -2...2, using: &rng) * scale).bitPattern
                bytes[b * format.typeSize + at] = UInt8(h & 0xFF)
                bytes[b * format.typeSize + at + 1] = UInt8(h >> 8)
            }
        }
        return bytes
    }

    /// Byte offsets of a block's f16 scales (d, and Q2_K's dmin).
    static func scaleOffsets(_ format: GGMLBlocks.Format) -> [Int] { format == .q2K ? [80, 82] : [0] }

    static func dequantized(_ format: GGMLBlocks.Format, _ bytes: [UInt8]) -> [Float] {
        let type = GGMLType(rawValue: UInt32(format.rawValue))!
        let count = bytes.count / format.typeSize * format.blockSize
        return [Float](unsafeUninitializedCapacity: count) { out, n in
            bytes.withUnsafeBytes { GGUFDequantizer.dequantize(type, blocks: $0, into: out) }
            n = count
        }
    }

    /// Per element, the magnitude the float32 error is measured against: |w|, plus twice Q2_K's minimum term
    /// (|dmin · (scale >> 4)|), since the kernel computes dl·Σq·x − ml·Σx for w = dl·q − ml.
    static func magnitudes(_ format: GGMLBlocks.Format, _ bytes: [UInt8], _ w: [Float]) -> [Double] {
        guard format == .q2K else { return w.map { abs(Double($0)) } }
        return w.indices.map { i in
            let block = i / 256, sub = (i % 256) / 16
            let at = block * format.typeSize
            let dmin = GGUFDequantizer.halfToFloat(UInt16(bytes[at + 82]) | UInt16(bytes[at + 83]) << 8)
            let ml = Double(dmin * Float(bytes[at + sub] >> 4))
            return abs(Double(w[i])) + 2 * abs(ml)
        }
    }

    /// The kernel at `level` over rows `range` of a `rows × cols` matrix, for `m` tokens; rows outside stay NaN.
    static func fused(_ format: GGMLBlocks.Format, _ bytes: [UInt8], rows: Int, cols: Int, range: Range<Int>, x: [Float], m: Int, level: Kernels.Level) -> [Float] {
        var y = [Float](repeating: .nan, count: m * rows)
        bytes.withUnsafeBytes { raw in
            let blocks = GGMLBlocks(format: format, base: raw.baseAddress!, cols: cols)!
            x.withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { yp in
                    Kernels.ggmlRows(level: level, blocks, rows: range, cols: cols, x: xp.baseAddress!, m: m, y: yp.baseAddress!, ldy: rows)
                }
            }
        }
        return y
    }

    /// The largest error of `y` against dequantize-then-dot in float64, relative to Σ magnitude·|x| per output,
    /// with where it is; checks that rows outside `range` were not written.
    static func check(
        _ format: GGMLBlocks.Format, _ bytes: [UInt8], rows: Int, cols: Int, range: Range<Int>, x: [Float], m: Int,
        level: Kernels.Level, tolerance: Double = 1e-5
    ) {
        let w = dequantized(format, bytes)
        let mag = magnitudes(format, bytes, w)
        let y = fused(format, bytes, rows: rows, cols: cols, range: range, x: x, m: m, level: level)
        var worst = (relative: 0.0, token: 0, row: 0, difference: 0.0)
        for t in 0..<m {
            for r in 0..<rows {
                let got = y[t * rows + r]
                guard range.contains(r) else {
                    #expect(got.isNaN, "\(format) \(level): row \(r) outside \(range) was written")
                    continue
                }
                var exact = 0.0, scale = 0.0
                for c in 0..<cols {
                    exact += Double(w[r * cols + c]) * Double(x[t * cols + c])
                    scale += mag[r * cols + c] * abs(Double(x[t * cols + c]))
                }
                guard exact.isFinite else {
                    #expect(!got.isFinite, "\(format) \(level): token \(t) row \(r): \(got), dequantize-then-dot is \(exact)")
                    continue
                }
                let difference = abs(Double(got) - exact)
                let relative = scale > 0 ? difference / scale : difference
                if !(relative <= worst.relative) { worst = (relative, t, r, difference) }
            }
        }
        #expect(worst.relative <= tolerance,
                "\(format) \(level) \(rows)×\(cols), m \(m): |Δ| \(worst.difference) = \(worst.relative) of Σ|w·x| at token \(worst.token), row \(worst.row)")
    }

    static let levels = Kernels.Level.allCases

    @Test("random blocks: every format and level equals dequantize-then-dot within 1e-5 of Σ|w·x|", arguments: GGMLBlocks.Format.allCases)
    func randomBlocks(format: GGMLBlocks.Format) {
        var rng = SeededGenerator(seed: 17 &+ UInt64(format.rawValue))
        // An odd number of blocks per row (the AVX2 path takes two at a time), and a wide row.
        for (rows, blocksPerRow) in [(13, 7), (5, 1), (3, 40)] {
            let cols = blocksPerRow * format.blockSize
            let bytes = Self.randomBlocks(format, rows: rows, cols: cols, using: &rng)
            for m in 1...4 {
                let x = (0..<(m * cols)).map { _ in Float.random(in: -3...3, using: &rng) }
                for level in Self.levels {
                    Self.check(format, bytes, rows: rows, cols: cols, range: 0..<rows, x: x, m: m, level: level)
                    if rows > 4 { Self.check(format, bytes, rows: rows, cols: cols, range: 2..<(rows - 1), x: x, m: m, level: level) }
                }
            }
        }
    }

    /// Q2_K's per-16 activation sums live on the stack up to 65,536 columns, on the heap beyond.
    @Test("a Q2_K row wider than the kernel's stack buffer (257 blocks, 65,792 columns)")
    func wideQ2KRow() {
        var rng = SeededGenerator(seed: 257)
        let cols = 257 * 256
        let bytes = Self.randomBlocks(.q2K, rows: 2, cols: cols, using: &rng)
        let x = (0..<(2 * cols)).map { _ in Float.random(in: -1...1, using: &rng) }
        for level in Self.levels { Self.check(.q2K, bytes, rows: 2, cols: cols, range: 0..<2, x: x, m: 2, level: level) }
    }

    /// Blocks at the edges of the format: zero, negative zero, the largest and the smallest (subnormal) f16
    /// scales, the extreme codes, and activations spanning many binades.
    @Test("edge blocks: extreme scales and codes, wide-ranging activations", arguments: GGMLBlocks.Format.allCases)
    func edgeBlocks(format: GGMLBlocks.Format) {
        var rng = SeededGenerator(seed: 99 &+ UInt64(format.rawValue))
        let scales: [UInt16] = [0x0000, 0x8000, 0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x3C00]
        let fills: [UInt8] = [0x00, 0xFF, 0x88, 0x80, 0x7F]
        let cols = 2 * format.blockSize
        var bytes: [UInt8] = []
        var rows = 0
        for s in scales {
            for fill in fills {
                var row = [UInt8](repeating: fill, count: 2 * format.typeSize)
                for b in 0..<2 {
                    for at in Self.scaleOffsets(format) {
                        row[b * format.typeSize + at] = UInt8(s & 0xFF)
                        row[b * format.typeSize + at + 1] = UInt8(s >> 8)
                    }
                }
                bytes += row
                rows += 1
            }
        }
        // Activations from 1e-30 to 1e4 in magnitude, both signs.
        let x = (0..<(2 * cols)).map { i -> Float in
            let sign: Float = Bool.random(using: &rng) ? 1 : -1
            return sign * Float(pow(10, Double(i % 35) - 30)) * Float.random(in: 0.5...1, using: &rng)
        }
        for level in Self.levels {
            Self.check(format, bytes, rows: rows, cols: cols, range: 0..<rows, x: x, m: 2, level: level)
        }
    }

    /// An infinite scale makes the row non-finite, as dequantize-then-dot does.
    @Test("an infinite scale gives a non-finite product", arguments: GGMLBlocks.Format.allCases)
    func infiniteScale(format: GGMLBlocks.Format) {
        var bytes = [UInt8](repeating: 0x35, count: format.typeSize)
        bytes[Self.scaleOffsets(format)[0]] = 0x00
        bytes[Self.scaleOffsets(format)[0] + 1] = 0x7C
        let x = [Float](repeating: 0.25, count: format.blockSize)
        for level in Self.levels {
            let y = Self.fused(format, bytes, rows: 1, cols: format.blockSize, range: 0..<1, x: x, m: 1, level: level)
            #expect(!y[0].isFinite, "\(format) \(level): \(y[0])")
            Self.check(format, bytes, rows: 1, cols: format.blockSize, range: 0..<1, x: x, m: 1, level: level)
        }
    }

    @Test("the formats are ggml's types: ids, block sizes, bytes per block; whole blocks only")
    func formatsAreGGMLTypes() throws {
        for format in GGMLBlocks.Format.allCases {
            let type = try #require(GGMLType(rawValue: UInt32(format.rawValue)))
            #expect(GGMLBlocks.Format(type) == format)
            #expect(type.name == format.description && type.blockSize == format.blockSize && type.typeSize == format.typeSize)
            #expect(format.rowBytes(cols: 3 * format.blockSize) == 3 * format.typeSize)
            #expect(format.rowBytes(cols: format.blockSize + 16) == nil && format.rowBytes(cols: 0) == nil)
            #expect(GGMLBlocks(format: format, base: UnsafeRawPointer(bitPattern: 64)!, cols: format.blockSize / 2) == nil)
        }
        let fused = Set(GGMLBlocks.Format.allCases.map(\.rawValue))
        for type in GGMLType.allCases where !fused.contains(Int32(type.rawValue)) { #expect(GGMLBlocks.Format(type) == nil, "\(type.name)") }
    }

    @Test("K2PACK_KERNELS=dequantize (and swift) sends ggml blocks through the decode path; other values do not")
    func dequantizeSwitch() {
        #expect(Kernels.ggmlDequantize(environment: "dequantize") && Kernels.ggmlDequantize(environment: "swift"))
        #expect(!Kernels.ggmlDequantize(environment: nil) && !Kernels.ggmlDequantize(environment: "portable"))
    }
}

/// The GGUF weight source offers its Q4_0 / Q8_0 / Q2_K matrices to the fused kernels and F32 / BF16 matrices as
/// plain rows; decode (one to four tokens) then runs on them, and the fixtures' logits stay those of the oracle.
@Suite("GGUF matrices in the fused decode path")
struct GGUFFusedDecodeTests {
    static func gguf(_ name: String) -> String { TestPaths.fixture("gguf-models/\(name).gguf") }

    @Test("routed experts and attention of the Q4_0 and Q8_0 fixtures are served as ggml blocks; BF16 as plain rows")
    func servedAsBlocks() throws {
        let q4 = try GGUFWeightSource(path: Self.gguf("k2-thinking-tiny.Q4_0"))
        let layer = q4.forward.firstDenseLayers
        let expert = try q4.matrix(.routedExpertGate, layer: layer, expert: 1)
        guard case .rows(let rows) = expert.storage, let blocks = rows.ggmlBlocks else {
            Issue.record("\(expert.name) is not served as ggml blocks")
            return
        }
        #expect(blocks.format == .q4_0 && blocks.rowBytes == expert.cols / 32 * 18)
        #expect(FusedKernels.supports(expert))
        // The slab is expert 1's: its first row starts one expert's rows after the tensor's first row.
        let first = try q4.matrix(.routedExpertGate, layer: layer, expert: 0)
        if case .rows(let r0) = first.storage, let b0 = r0.ggmlBlocks {
            #expect(blocks.base - b0.base == expert.rows * blocks.rowBytes)
        }
        let q8 = try GGUFWeightSource(path: Self.gguf("k25-tiny.Q8_0"))
        let qa = try q8.matrix(.attnQA, layer: 0)
        if case .rows(let rows) = qa.storage { #expect(rows.ggmlBlocks?.format == .q8_0) } else { Issue.record("\(qa.name): \(qa.storage)") }
        // kv_b rebuilt from attn_k_b / attn_v_b keeps decoding.
        let kvb = try q8.matrix(.attnKVB, layer: 0)
        #expect(!FusedKernels.supports(kvb))
        let bf16 = try GGUFWeightSource(path: Self.gguf("k2-thinking-tiny.BF16-Q4_0"))
        let o = try bf16.matrix(.attnO, layer: 0)
        guard case .plain(let view) = o.storage else {
            Issue.record("\(o.name) is not served as plain BF16 rows")
            return
        }
        #expect(view.dtype == .bf16 && view.shape == [o.rows, o.cols] && view.bytes.count == o.rows * o.cols * 2)
    }

    /// One decoded matrix against the fused product on the real fixture bytes, through `ForwardPass.linear`.
    @Test("ForwardPass.linear over a GGUF expert: fused (≤ 4 tokens) equals decode-then-multiply within 1e-5 of Σ|w·x|")
    func linearFusedMatchesDecoded() throws {
        let source = try GGUFWeightSource(path: Self.gguf("k2-thinking-tiny.Q4_0"))
        let pass = ForwardPass(weights: source, threads: 2)
        let w = try source.matrix(.routedExpertDown, layer: source.forward.firstDenseLayers, expert: 2)
        let dense = w.all()
        var rng = SeededGenerator(seed: 5)
        for m in 1...4 {
            let x = (0..<(m * w.cols)).map { _ in Float.random(in: -1...1, using: &rng) }
            let y = pass.linear(x, w)
            for t in 0..<m {
                for r in 0..<w.rows {
                    var exact = 0.0, scale = 0.0
                    for c in 0..<w.cols {
                        exact += Double(dense[r * w.cols + c]) * Double(x[t * w.cols + c])
                        scale += abs(Double(dense[r * w.cols + c]) * Double(x[t * w.cols + c]))
                    }
                    #expect(abs(Double(y[t * w.rows + r]) - exact) <= 1e-5 * scale, "token \(t) row \(r): \(y[t * w.rows + r]) vs \(exact)")
                }
            }
        }
    }

    /// Decoding (the first one and four tokens of the fixture's first sequence, so every product takes the
    /// fused path) gives the float64 oracle's logits for those tokens, with the tolerance the whole-sequence
    /// test uses (max |Δ| ≤ 1e-5).
    @Test("decode of 1 and 4 tokens through the fused kernels gives the float64 oracle's logits (max |Δ| ≤ 1e-5)", arguments: [
        ("deepseek-v3-tiny.Q8_0", "deepseek-v3-tiny.h5:/fp32"),
        ("k2-thinking-tiny.Q4_0", "k2-thinking-tiny.h5:/exact"),
        ("k25-tiny.Q8_0", "k25-tiny.h5:/exact"),
    ])
    func fewTokensMatchOracle(name: String, reference: String) throws {
        let ref = try ReferenceDump(spec: TestPaths.fixture("references/" + reference))
        let pass = ForwardPass(weights: try ForwardModel.open(Self.gguf(name)).weights, threads: 2)
        let vocab = pass.forward.vocabSize
        let oracle = try #require(try ReferenceDump(spec: GGUFWeightSourceTests.references + ":/" + name).logits())
        for count in [1, 4] where count <= ref.batch.tokens {
            let ids = Array(ref.inputIDs[0..<count])
            let logits = try pass.logits(for: ids, batch: ForwardPass.Batch(sequences: 1, tokens: count))
            let expected = Array(oracle.values[0..<(count * vocab)])
            let worst = zip(expected, logits).map { abs($0 - $1) }.max() ?? .infinity
            #expect(logits.count == expected.count && worst <= 1e-5, "\(name), \(count) token(s): max |Δ| \(worst)")
        }
    }
}
