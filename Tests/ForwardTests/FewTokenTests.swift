@testable import Forward
import ModelStore
import TensorCore
import TestSupport
import Testing

/// Decoding's steps of several products (`ForwardPass.fewTokenProducts`): the same bits as one kernel call per
/// matrix, whatever the thread count, and the MoE block in two such steps equal to expert by expert.
@Suite("Few-token steps")
struct FewTokenTests {
    @Test("a step of several products equals one kernel call per matrix, for 1–5 workers", arguments: [1, 2, 3, 4])
    func products(tokens m: Int) throws {
        var rng = SeededGenerator(seed: 41 &+ UInt64(m))
        let pass = ForwardPass(weights: try ModelStore.open(TestPaths.fixture("k25-tiny")).weights(dequant: .exact), threads: 2)
        // Row counts off the four-row tiles and off any even split; INT4 (group 32) and BF16.
        var matrices: [WeightMatrix] = []
        var buffers: [UnsafeMutableRawBufferPointer] = []
        defer { buffers.forEach { $0.deallocate() } }
        for (rows, cols) in [(37, 256), (3, 64), (130, 512)] {
            let (plain, b1) = KernelTests.stored(CKernelTests.bf16Bytes(rows * cols, magnitude: 1, using: &rng), dtype: .bf16, shape: [rows, cols])
            let codes = (0..<(rows * cols / 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let (codeView, b2) = KernelTests.stored(codes, dtype: .i32, shape: [rows, cols / 8])
            let (scaleView, b3) = KernelTests.stored(CKernelTests.bf16Bytes(rows * cols / 32, magnitude: 0.1, using: &rng), dtype: .bf16, shape: [rows, cols / 32])
            buffers += [b1, b2, b3]
            matrices.append(WeightMatrix(name: "bf16 \(rows)×\(cols)", rows: rows, cols: cols, storage: .plain(plain)))
            matrices.append(WeightMatrix(
                name: "int4 \(rows)×\(cols)", rows: rows, cols: cols,
                storage: .packed(codes: codeView, scales: scaleView, groupSize: 32, bits: 4, dequant: .exact, highFirst: false)))
        }
        let widths = Array(Set(matrices.map(\.cols))).sorted()
        let inputs = widths.map { cols in (0..<(m * cols)).map { _ in Float.random(in: -2...2, using: &rng) } }
        let products = matrices.map { ForwardPass.FewTokenProduct(input: widths.firstIndex(of: $0.cols)!, w: $0) }
        #expect(pass.fewTokenEligible(inputs, products))
        let expected = products.map { p in
            var y = [Float](repeating: 0, count: m * p.w.rows)
            inputs[p.input].withUnsafeBufferPointer { xp in
                y.withUnsafeMutableBufferPointer { FusedKernels.rows(p.w, 0..<p.w.rows, x: xp.baseAddress!, m: m, y: $0.baseAddress!, ldy: p.w.rows) }
            }
            return y
        }
        for workers in 1...5 {
            let got = pass.fewTokenProducts(inputs, products, workers: workers)
            for (i, p) in products.enumerated() {
                #expect(got[i].map(\.bitPattern) == expected[i].map(\.bitPattern), "\(p.w.name), \(workers) workers")
            }
        }
        // `linear` takes the same path.
        for p in products { #expect(pass.linear(inputs[p.input], p.w) == pass.fewTokenProducts(inputs, [p])[0]) }
    }

    @Test("a step's matrices give their pages back whole, once each, when the step ends, for 1–3 workers", arguments: [1, 2, 3])
    func releasedWhenTheStepEnds(workers: Int) throws {
        var rng = SeededGenerator(seed: 43)
        let pass = ForwardPass(weights: try ModelStore.open(TestPaths.fixture("k25-tiny")).weights(dequant: .exact), threads: 2)
        let released = Locked([String: [Range<Int>]]())
        func recording(_ view: TensorView, _ name: String) -> TensorView {
            var v = view
            v.release = { range in released.withLock { $0[name, default: []].append(range) } }
            return v
        }
        let (rows, cols) = (301, 256)  // over the 2¹⁶ weights below which a step runs on one thread
        let (plain, b1) = KernelTests.stored(CKernelTests.bf16Bytes(rows * cols, magnitude: 1, using: &rng), dtype: .bf16, shape: [rows, cols])
        let (codes, b2) = KernelTests.stored((0..<(rows * cols / 2)).map { _ in UInt8.random(in: 0...255, using: &rng) }, dtype: .i32, shape: [rows, cols / 8])
        let (scales, b3) = KernelTests.stored(CKernelTests.bf16Bytes(rows * cols / 32, magnitude: 0.1, using: &rng), dtype: .bf16, shape: [rows, cols / 32])
        defer { [b1, b2, b3].forEach { $0.deallocate() } }
        let products = [
            ForwardPass.FewTokenProduct(input: 0, w: WeightMatrix(name: "bf16", rows: rows, cols: cols, storage: .plain(recording(plain, "bf16")))),
            ForwardPass.FewTokenProduct(input: 0, w: WeightMatrix(
                name: "int4", rows: rows, cols: cols,
                storage: .packed(codes: recording(codes, "codes"), scales: recording(scales, "scales"), groupSize: 32, bits: 4, dequant: .exact, highFirst: false))),
        ]
        _ = pass.fewTokenProducts([(0..<cols).map { _ in Float.random(in: -1...1, using: &rng) }], products, workers: workers)
        let got = released.withLock { $0 }
        #expect(got == ["bf16": [0..<(rows * cols * 2)], "codes": [0..<(rows * cols / 2)], "scales": [0..<(rows * cols / 32 * 2)]], "\(got)")
    }

    @Test("more tokens than the fused kernels take, or a matrix without one, are not a few-token step")
    func eligibility() throws {
        let pass = ForwardPass(weights: try ModelStore.open(TestPaths.fixture("k25-tiny")).weights(dequant: .exact), threads: 2)
        let (view, b) = KernelTests.stored([UInt8](repeating: 0, count: 8 * 16 * 2), dtype: .bf16, shape: [8, 16])
        defer { b.deallocate() }
        let w = WeightMatrix(name: "w", rows: 8, cols: 16, storage: .plain(view))
        let product = ForwardPass.FewTokenProduct(input: 0, w: w)
        #expect(pass.fewTokenEligible([[Float](repeating: 1, count: FusedKernels.maxTokens * 16)], [product]))
        #expect(!pass.fewTokenEligible([[Float](repeating: 1, count: (FusedKernels.maxTokens + 1) * 16)], [product]))
        let fp8 = WeightMatrix(name: "fp8", rows: 8, cols: 16, storage: .fp8Block(weight: view, scales: view, blockRows: 8, blockCols: 16))
        #expect(!pass.fewTokenEligible([[Float](repeating: 1, count: 16)], [ForwardPass.FewTokenProduct(input: 0, w: fp8)]))
    }

    @Test("the MoE block of 1–4 tokens in two steps is bit-identical to expert by expert, for 1–3 threads", arguments: [1, 2, 3, 4])
    func moeSteps(tokens rows: Int) throws {
        var rng = SeededGenerator(seed: 7 &+ UInt64(rows))
        for fixture in ["k25-tiny", "deepseek-v3-tiny"] {
            let weights = try ModelStore.open(TestPaths.fixture(fixture)).weights(dequant: .exact)
            let config = weights.forward
            let layer = try #require((0..<config.numLayers).first { config.isMoELayer($0) })
            let x = (0..<(rows * config.hiddenSize)).map { _ in Float.random(in: -1...1, using: &rng) }
            let reference = ForwardPass(weights: weights, threads: 1)
            guard case .moe(let moe) = try LayerWeights(weights, layer: layer).mlp else {
                Issue.record("\(fixture) layer \(layer) is not a MoE layer")
                continue
            }
            let expertByExpert = try reference.moe(moe, x, rows: rows, stepwise: false)
            for threads in 1...3 {
                let stepped = try ForwardPass(weights: weights, threads: threads).moe(moe, x, rows: rows)
                #expect(stepped.out.map(\.bitPattern) == expertByExpert.out.map(\.bitPattern), "\(fixture), \(threads) threads")
                #expect(stepped.topK == expertByExpert.topK)
            }
        }
    }
}
