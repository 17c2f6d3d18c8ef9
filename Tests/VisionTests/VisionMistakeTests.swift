import Forward
import Foundation
import ModelStore
import Parity
import TensorCore
import TestSupport
import Testing
import Vision

/// The mistakes engines are known to make in the vision path, written here (never in the reference path) and
/// plugged into the tower through `VisionSteps`, its config or its store, to prove that parity catches each one
/// at the step where it lives.
enum Mistakes {
    /// Bilinear instead of bicubic (one accelerator port's resample): two taps, the source clamped at 0.
    @Sendable static func bilinearAxis(_ n: Int, _ source: Int) -> [Float] {
        var a = [Float](repeating: 0, count: n * source)
        for i in 0..<n {
            let src = max(0, (Float(i) + 0.5) * Float(source) / Float(n) - 0.5)
            let f = Int(src.rounded(.down)), t = src - Float(f)
            a[i * source + min(f, source - 1)] += 1 - t
            a[i * source + min(f + 1, source - 1)] += t
        }
        return a
    }

    /// The RoPE pairs in the order the original docstring claims: height first.
    @Sendable static func heightFirst(_ row: Int, _ col: Int, _ frequencies: [Float], _ out: UnsafeMutablePointer<Float>) {
        for i in 0..<frequencies.count {
            out[2 * i] = Float(row) * frequencies[i]
            out[2 * i + 1] = Float(col) * frequencies[i]
        }
    }

    /// rotate_half on the stored (pairwise) q and k, without transformers' row permutation.
    @Sendable static func rotateHalf(_ x: UnsafeMutablePointer<Float>, _ cos: UnsafePointer<Float>, _ sin: UnsafePointer<Float>, _ pairs: Int) {
        for m in 0..<pairs {
            let a = x[m], b = x[m + pairs]
            x[m] = a * cos[m] - b * sin[m]
            x[m + pairs] = a * sin[m] + b * cos[m]
        }
    }

    /// The first frame instead of the mean over a chunk's frames.
    @Sendable static func firstFrame(_ frames: [ArraySlice<Float>]) -> [Float] { Array(frames[0]) }

    /// Four consecutive raster patches per token instead of a 2×2 block: the pooled frame reordered so that the
    /// tower's block gather picks raster patches 4m … 4m+3 for token m (grid width `w`, width `D`).
    static func rasterMerge(w: Int, width D: Int) -> @Sendable ([ArraySlice<Float>]) -> [Float] {
        { frames in
            let pooled = PositionTerms.temporalMean(frames)
            let h = pooled.count / D / w
            var out = pooled
            var m = 0
            for R in 0..<(h / 2) {
                for C in 0..<(w / 2) {
                    for s in 0..<4 {
                        let p = (2 * R + s / 2) * w + 2 * C + s % 2
                        for d in 0..<D { out[p * D + d] = pooled[(4 * m + s) * D + d] }
                    }
                    m += 1
                }
            }
            return out
        }
    }
}

/// A store that serves some tensors edited (q and k blocks of wqkv swapped, a wrong shape) or not at all.
final class EditedStore: TensorStore, @unchecked Sendable {
    let base: any TensorStore
    private var edited: [String: (dtype: DType, shape: [Int], bytes: [UInt8])] = [:]
    private var missing: Set<String> = []
    private var kept: [UnsafeMutableRawBufferPointer] = []

    init(_ base: any TensorStore) { self.base = base }
    deinit { for b in kept { b.deallocate() } }

    func replace(_ name: String, dtype: DType, shape: [Int], bytes: [UInt8]) { edited[name] = (dtype, shape, bytes) }
    func remove(_ name: String) { missing.insert(name) }

    /// The stored bytes of `name`.
    func bytes(_ name: String) throws -> (dtype: DType, shape: [Int], bytes: [UInt8]) {
        let v = try base.view(name)
        return (v.dtype, v.shape, Array(v.bytes))
    }

    func view(_ name: String) throws(ForwardError) -> TensorView {
        if missing.contains(name) { throw .missingTensor(name) }
        guard let e = edited[name] else { return try base.view(name) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(e.bytes.count, 1), alignment: 16)
        buffer.copyBytes(from: e.bytes)
        kept.append(buffer)
        return TensorView(name: name, dtype: e.dtype, shape: e.shape, bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<e.bytes.count]))
    }

    func releaseViewed() { base.releaseViewed() }
}

@Suite("Vision parity catches each deliberate mistake at its step")
struct VisionMistakeTests {
    /// The first failing point, and that the isolated runs fail only where the mistake lives.
    func check(_ report: VisionParityReport, first: String, isolatedFailures allowed: (String) -> Bool) {
        #expect(!report.pass)
        #expect(report.firstFailure == first, "\(VisionHarness.failures(report))")
        let isolated = report.points.filter { p in p.isolated.map { !$0.passes(report.tolerance) } ?? false }.map(\.point)
        let unexpected = isolated.filter { !allowed($0) }
        #expect(unexpected.isEmpty, "isolated failures \(isolated)")
    }

    @Test("bilinear instead of bicubic fails at the patch embedding", arguments: VisionHarness.groups)
    func bilinear(group: String) throws {
        let report = try VisionHarness.run(group, steps: VisionSteps(axisWeights: Mistakes.bilinearAxis))
        check(report, first: "patch_embed_out") { _ in false }
        #expect(report.points[0].chained.maxAbs > 1e-2)
    }

    @Test("RoPE height-first or rotate-half on the stored pairs fails at block 0's attention", arguments: VisionHarness.groups)
    func rope(group: String) throws {
        for steps in [VisionSteps(ropeAngles: Mistakes.heightFirst), VisionSteps(rotate: Mistakes.rotateHalf)] {
            let report = try VisionHarness.run(group, steps: steps)
            // Isolated, every block is fed the reference's input, but its MLP still sees our wrong attention.
            check(report, first: "layers/0/attn_out") { $0.hasPrefix("layers/") }
        }
    }

    @Test("exact GELU in the encoder fails at block 0's MLP; tanh GELU in the projector fails at the projector", arguments: VisionHarness.groups)
    func gelu(group: String) throws {
        let encoder = try VisionHarness.run(group, steps: VisionSteps(encoderActivation: VisionMath.geluErf))
        check(encoder, first: "layers/0/mlp_out") { $0.hasSuffix("mlp_out") || $0.hasSuffix("layer_out") }
        let projector = try VisionHarness.run(group, steps: VisionSteps(projectorActivation: VisionMath.geluTanh))
        check(projector, first: "projector_out") { $0 == "projector_out" }
    }

    @Test("no temporal mean (first frame only) fails the video chunk at the merger and leaves images alone")
    func temporalPooling() throws {
        let video = try VisionHarness.run("/video", steps: VisionSteps(temporalMerge: Mistakes.firstFrame))
        check(video, first: "merger_out") { $0 == "merger_out" }
        #expect(try VisionHarness.run("/images", steps: VisionSteps(temporalMerge: Mistakes.firstFrame)).pass)
    }

    @Test("four consecutive raster patches instead of a 2×2 block fails at the merger")
    func mergeOrder() throws {
        // The /video chunk is one entry 2 × 4: the gather differs from raster order.
        let report = try VisionHarness.run("/video", steps: VisionSteps(temporalMerge: Mistakes.rasterMerge(w: 4, width: 32)))
        check(report, first: "merger_out") { $0 == "merger_out" }
    }

    @Test("encoder LayerNorm epsilon 1e-6 fails at block 0's attention; projector epsilon 1e-6 at the projector")
    func layerNormEps() throws {
        var config = try VisionHarness.tower().config
        config.encoderEps = 1e-6
        check(try VisionHarness.run("/images", config: config), first: "layers/0/attn_out") { $0.hasPrefix("layers/0/") }
        config = try VisionHarness.tower().config
        config.projectorEps = 1e-6
        check(try VisionHarness.run("/images", config: config), first: "projector_out") { $0 == "projector_out" }
    }

    @Test("wqkv split in the wrong order (k rows taken as q) fails at block 0's attention")
    func qkvOrder() throws {
        let opened = try ModelStore.open(VisionHarness.model)
        let store = EditedStore(opened.store)
        let D = try VisionHarness.tower().config.width
        for b in 0..<2 {
            for suffix in ["weight", "bias"] {
                let name = "vision_tower.encoder.blocks.\(b).wqkv.\(suffix)"
                let stored = try store.bytes(name)
                let block = stored.bytes.count / 3
                precondition(block == D * (suffix == "weight" ? D : 1) * 2)
                // [k | q | v]
                let swapped = Array(stored.bytes[block..<(2 * block)]) + Array(stored.bytes[0..<block]) + Array(stored.bytes[(2 * block)...])
                store.replace(name, dtype: stored.dtype, shape: stored.shape, bytes: swapped)
            }
        }
        let report = try VisionHarness.run("/images", store: store)
        check(report, first: "layers/0/attn_out") { $0.hasPrefix("layers/") }
    }
}
