@testable import Forward
import Dispatch
import ModelStore
import TensorCore
import TestSupport
import Testing

/// The prefill INT4 product (int4_gemm.h through `Kernels.int4Gemm`, `ForwardPass.int4Linear`): every level gives
/// the portable path's bits (one fused multiply-add chain per output), whatever the row range, the token count or
/// the thread count, within the chain's error bound of the exact product; and the MoE block of many tokens does not
/// depend on the thread count.
@Suite("INT4 prefill product")
struct Int4GemmTests {
    /// An INT4 matrix with random codes and BF16 scales in ±0.1 (buffers to deallocate).
    static func matrix(rows: Int, cols: Int, group: Int, using rng: inout some RandomNumberGenerator) -> (WeightMatrix, [UnsafeMutableRawBufferPointer]) {
        let codes = (0..<(rows * cols / 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let (codeView, b1) = KernelTests.stored(codes, dtype: .i32, shape: [rows, cols / 8])
        let (scaleView, b2) = KernelTests.stored(CKernelTests.bf16Bytes(rows * cols / group, magnitude: 0.1, using: &rng), dtype: .bf16, shape: [rows, cols / group])
        let w = WeightMatrix(name: "int4 \(rows)×\(cols) group \(group)", rows: rows, cols: cols,
                             storage: .packed(codes: codeView, scales: scaleView, groupSize: group, bits: 4, dequant: .exact, highFirst: false))
        return (w, [b1, b2])
    }

    /// `Kernels.int4Gemm` at `level` over rows `range` (the other rows left NaN).
    static func product(_ w: WeightMatrix, _ range: Range<Int>, x: [Float], m: Int, level: Kernels.Level) -> [Float] {
        guard case let .packed(codes, scales, group, _, _, _) = w.storage else { return [] }
        var y = [Float](repeating: .nan, count: m * w.rows)
        let work = UnsafeMutablePointer<Float>.allocate(capacity: Kernels.int4GemmWorkspace(cols: w.cols))
        defer { work.deallocate() }
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                Kernels.int4Gemm(
                    level: level, words: codes.bytes.baseAddress!, scales: scales.bytes.baseAddress!, rows: range, cols: w.cols, group: group,
                    x: xp.baseAddress!, m: m, y: yp.baseAddress!, ldy: w.rows, work: work)
            }
        }
        return y
    }

    /// Records where `y` (the product at `level`) differs in any bit from the portable path's `portable` (rows
    /// outside the range, NaN in both, compared as 0).
    static func expectPortableBits(_ y: [Float], _ portable: [Float], _ w: WeightMatrix, _ range: Range<Int>, m: Int, level: Kernels.Level) {
        if let d = CKernelTests.firstDifference(y.map { $0.isNaN ? 0 : $0 }, portable.map { $0.isNaN ? 0 : $0 }) {
            Issue.record(Comment(rawValue: "\(w.name) rows \(range), \(m) tokens, \(level) vs portable: largest difference \(d.difference) at [\(d.index / w.rows), \(d.index % w.rows)]"))
        }
    }

    /// γ(n) for a chain of `cols` fused multiply-adds (one rounding each) after the exact decoding.
    static func bound(cols: Int) -> Double {
        let n = Double(cols + 1), u = 0x1p-24
        return n * u / (1 - n * u)
    }

    @Test("every level gives the portable bits, for row ranges and token counts off the blocking, within γ(cols + 1)·Σ|w·x|")
    func levels() throws {
        var rng = SeededGenerator(seed: 16)
        // Columns: one panel, a panel and a tail of 8, several panels; tokens: under, at and over a run of six, and
        // over one pass of 192 tokens.
        let shapes: [(rows: Int, cols: Int, group: Int, m: Int)] = [
            (37, 256, 32, 5), (40, 264, 8, 6), (19, 768, 128, 7), (33, 512, 32, 13), (17, 64, 16, 200), (5, 32, 32, 1),
        ]
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        var worst = (ratio: 0.0, at: "nothing")
        for (rows, cols, group, m) in shapes {
            let (w, b) = Self.matrix(rows: rows, cols: cols, group: group, using: &rng)
            buffers += b
            let x = (0..<(m * cols)).map { _ in Float.random(in: -2...2, using: &rng) * [Float(1), 1e-3, 1e3].randomElement(using: &rng)! }
            let decoded = w.all()
            for range in [0..<rows, 3..<(rows - 1), (rows - 1)..<rows] {
                let portable = Self.product(w, range, x: x, m: m, level: .portable)
                for level in Kernels.Level.allCases {
                    let y = Self.product(w, range, x: x, m: m, level: level)
                    Self.expectPortableBits(y, portable, w, range, m: m, level: level)
                    let error = CKernelTests.worstError(y, w: decoded, x: x, cols: cols, range: range, bound: Self.bound(cols: cols),
                                                        label: "\(w.name) \(level)")
                    if error.ratio > worst.ratio { worst = error }
                }
            }
        }
        #expect(worst.ratio <= 1, "largest error \(worst.ratio) of the bound: \(worst.at)")
    }

    @Test("the AVX-512 tile gives the portable bits off its blocking: rows, columns, tokens, groups, row ranges")
    func avx512Edges() throws {
        var rng = SeededGenerator(seed: 19)
        // Its blocking: panels of 32 rows × 128 columns, tiles of up to 14 tokens, passes of 384 tokens; scales
        // gathered two groups at a time when a panel's columns touch an even number of groups. Below: a panel and
        // 13 rows with a tail of 32 columns and 15 tokens (runs of 8 and 7); group 8 (16 groups per panel), a
        // tail of one word (8 columns) and 29 tokens; group 48 (three groups in some panels: scales one by one)
        // and exactly 14 tokens; half a panel and one token; more tokens than a pass; group 128. On a CPU without
        // AVX-512 the level is lowered and the test still compares that level with the portable path.
        let shapes: [(rows: Int, cols: Int, group: Int, m: Int)] = [
            (45, 416, 32, 15), (70, 136, 8, 29), (33, 384, 48, 14), (16, 256, 32, 1), (96, 640, 32, 400), (17, 2048, 128, 3),
        ]
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        for (rows, cols, group, m) in shapes {
            let (w, b) = Self.matrix(rows: rows, cols: cols, group: group, using: &rng)
            buffers += b
            let x = (0..<(m * cols)).map { _ in Float.random(in: -2...2, using: &rng) }
            for range in [0..<rows, 1..<(rows - 1), (rows - 1)..<rows, min(31, rows - 1)..<rows] {
                let portable = Self.product(w, range, x: x, m: m, level: .portable)
                let y = Self.product(w, range, x: x, m: m, level: .avx512)
                Self.expectPortableBits(y, portable, w, range, m: m, level: .avx512)
                let written = (0..<(m * rows)).filter { !y[$0].isNaN }.count
                #expect(written == m * range.count, "\(w.name) rows \(range), \(m) tokens: \(written) outputs written, not \(m * range.count)")
            }
        }
    }

    /// 1,024 rows: a multiple of 512, so the kernel writes into rows of its own, 32 floats longer, packed after.
    @Test("linear of many tokens over INT4 weights is the kernel's product for 1–3 workers, near decode + OpenBLAS", arguments: [70, 1024])
    func linear(rows: Int) throws {
        var rng = SeededGenerator(seed: 17)
        let (w, buffers) = Self.matrix(rows: rows, cols: 1024, group: 32, using: &rng)
        defer { buffers.forEach { $0.deallocate() } }
        let m = 9
        let x = (0..<(m * w.cols)).map { _ in Float.random(in: -1...1, using: &rng) }
        let kernel = Self.product(w, 0..<w.rows, x: x, m: m, level: Kernels.active)
        let viaBLAS = Gemm.linear(x, w.all(), m: m, n: w.rows, k: w.cols)
        let weights = try ModelStore.open(TestPaths.fixture("k25-tiny")).weights(dequant: .exact)
        for workers in 1...3 {
            let y = ForwardPass(weights: weights, threads: workers).linear(x, w)
            if Kernels.hasInt4Gemm() {
                #expect(y.map(\.bitPattern) == kernel.map(\.bitPattern), "\(rows) rows, \(workers) workers")
            }
            let worst = zip(y, viaBLAS).enumerated().max { abs($0.element.0 - $0.element.1) < abs($1.element.0 - $1.element.1) }!
            #expect(abs(worst.element.0 - worst.element.1) <= 1e-4, "\(rows) rows, \(workers) workers: largest difference \(abs(worst.element.0 - worst.element.1)) from decode + OpenBLAS at [\(worst.offset / w.rows), \(worst.offset % w.rows)]")
        }
    }

    @Test("the MoE block of many tokens is bit-identical for 1–3 threads")
    func moeThreads() throws {
        var rng = SeededGenerator(seed: 18)
        for fixture in ["k25-tiny", "deepseek-v3-tiny"] {
            let weights = try ModelStore.open(TestPaths.fixture(fixture)).weights(dequant: .exact)
            let config = weights.forward
            let layer = try #require((0..<config.numLayers).first { config.isMoELayer($0) })
            guard case .moe(let moe) = try LayerWeights(weights, layer: layer).mlp else {
                Issue.record("\(fixture) layer \(layer) is not a MoE layer")
                continue
            }
            // Enough rows that the routes and the weighted sum split among the workers, and that some experts take
            // more tokens than one pass of the kernel (192).
            let rows = 1100
            let x = (0..<(rows * config.hiddenSize)).map { _ in Float.random(in: -1...1, using: &rng) }
            let one = try ForwardPass(weights: weights, threads: 1).moe(moe, x, rows: rows)
            for threads in 2...3 {
                let many = try ForwardPass(weights: weights, threads: threads).moe(moe, x, rows: rows)
                #expect(many.out.map(\.bitPattern) == one.out.map(\.bitPattern), "\(fixture), \(threads) threads")
                #expect(many.topK == one.topK)
            }
        }
    }

    @Test("the MoE block's routed outputs are added in expert order, one at a time, whatever order they finish in")
    func expertSumsOrder() {
        let count = 300, workers = 4
        var rng = SeededGenerator(seed: 19)
        let finishing = Array(0..<count).shuffled(using: &rng)
        let sums = ExpertSums()
        // (expert added, its output as given) in the order of the adds; the most adds running at once.
        let added = Locked([(expert: Int, output: [Float])]())
        let running = Locked((now: 0, most: 0))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for j in stride(from: worker, to: count, by: workers) {
                let i = finishing[j]
                sums.finished(i, [Float(i), -Float(i)]) { expert, output in
                    running.withLock { $0.now += 1; $0.most = max($0.most, $0.now) }
                    added.withLock { $0.append((expert, output)) }
                    running.withLock { $0.now -= 1 }
                }
            }
        }
        let log = added.withLock { $0 }
        #expect(sums.added == count)
        #expect(log.map(\.expert) == Array(0..<count), "adds out of expert order: first wrong at \(log.indices.first { log[$0].expert != $0 }.map(String.init) ?? "none")")
        #expect(log.allSatisfy { $0.output == [Float($0.expert), -Float($0.expert)] }, "an expert's add got another's output")
        #expect(running.withLock { $0.most } == 1, "adds overlapped")
    }
}
