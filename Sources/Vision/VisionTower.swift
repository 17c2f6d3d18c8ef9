import Forward
import Foundation
import ModelConfig
import TensorCore

/// The reference forward pass of Kimi K2.5's vision path in float32 (shared/reference/moonvit.md §4): MoonViT
/// (patch embedding, bicubic position table, temporal sinusoid, encoder blocks with 2-D RoPE and attention
/// within each entry), the final LayerNorm, the 2×2 merge with the mean over a chunk's frames, and the
/// projector into the language model's width. One function per step, shapes in comments; activations are
/// row-major `[rows, width]`. Weights are read from the store one block at a time and released after it, so
/// memory stays one block's weights plus the activations.
public final class VisionTower: @unchecked Sendable {
    public let config: VisionConfig
    public let weights: VisionWeights
    public let steps: VisionSteps
    public let threads: Int

    /// What one encoder block produced, each `[N, D]`.
    public struct BlockResult: Sendable {
        public var attentionOut: [Float]
        public var mlpOut: [Float]
        public var output: [Float]
    }

    /// `config`: the sizes, when not those of `model` (tests build deliberately wrong towers); `steps`: the
    /// reference steps unless a test replaces one.
    public init(
        model: ModelConfig, store: any TensorStore, config: VisionConfig? = nil, steps: VisionSteps = .reference,
        threads: Int = ProcessInfo.processInfo.activeProcessorCount
    ) throws(VisionError) {
        if let config { self.config = config } else { self.config = try VisionConfig(model) }
        let c = self.config
        guard c.heads >= 1, c.heads * c.headDim == c.width, c.headDim % 4 == 0, c.mergeHeight >= 1, c.mergeWidth >= 1 else {
            throw .config("a tower of \(c.heads) heads × \(c.headDim) for width \(c.width) and a \(c.mergeHeight) × \(c.mergeWidth) merge is not consistent")
        }
        weights = try VisionWeights(model: model, store: store)
        self.steps = steps
        self.threads = max(1, threads)
        // Parallelism is ours (weight rows, heads); OpenBLAS runs single-threaded inside each worker.
        Gemm.threads = 1
    }

    // MARK: - Whole path

    /// pixels → `[M, text_hidden]`, the tokens the language model receives, entry after entry, row-major.
    public func run(_ input: VisionInput) throws(VisionError) -> [Float] {
        var h = try embed(input)
        for b in 0..<config.blocks { h = try block(b, input: h, of: input).output }
        return try project(merge(finalNorm(h), of: input))
    }

    // MARK: - Patch embedding and position terms

    /// `x_n = W_pe · p_n + b_pe` (the stride-P convolution as a matrix product), plus the learned table
    /// resampled to the entry's grid, plus the temporal term of the patch's frame (chunks of t > 1 only).
    /// pixels [N, 3·P·P] → [N, D] (transformers' `patch_embed` output, the input of block 0).
    public func embed(_ input: VisionInput) throws(VisionError) -> [Float] {
        let c = config, D = c.width
        let kernel = try weights.matrix("vision_patch_embed_weight")
        guard kernel.cols == c.patchValues, kernel.rows == D else {
            throw .tensor(name: kernel.name, reason: "holds [\(kernel.rows), \(kernel.cols)] values, expected [\(D), \(c.patchValues)]")
        }
        var x = VisionMath.linear(input.pixels, kernel, bias: try vector("vision_patch_embed_bias", block: nil, count: D), threads: threads)
        let table = try weights.vector("vision_position_table")
        guard table.count == c.tableHeight * c.tableWidth * D else {
            throw .tensor(name: try weights.name("vision_position_table", block: nil), reason: "holds \(table.count) values, expected [\(c.tableHeight), \(c.tableWidth), \(D)]")
        }
        for (e, g) in input.grids.enumerated() {
            // [h, w, D], the same for every frame.
            let spatial = positionTerm(table: table, h: g.h, w: g.w)
            for f in 0..<g.t {
                let temporal = g.t > 1 ? PositionTerms.temporal(frame: f, width: D, theta: c.temporalTheta) : nil
                let first = input.starts[e] + f * g.framePatches
                for p in 0..<g.framePatches {
                    let row = (first + p) * D
                    for d in 0..<D { x[row + d] += spatial[p * D + d] }
                    if let temporal { for d in 0..<D { x[row + d] += temporal[d] } }
                }
            }
        }
        weights.release()
        return x
    }

    /// The learned table `[S_h, S_w, D]` resampled to an `h × w` grid with this tower's axis weights → `[h, w, D]`.
    public func positionTerm(table: [Float], h: Int, w: Int) -> [Float] {
        PositionTerms.resample(table: table, tableHeight: config.tableHeight, tableWidth: config.tableWidth, width: config.width, to: h, w, axis: steps.axisWeights)
    }

    // MARK: - Encoder block

    /// `h += attention(LN(h)); h += fc1(gelu_tanh(fc0(LN(h))))`, input and output [N, D].
    public func block(_ b: Int, input h: [Float], of input: VisionInput) throws(VisionError) -> BlockResult {
        let c = config, D = c.width
        try expectCount(h, input.patches * D, "block \(b)'s input", "[\(input.patches), \(D)]")
        var y = h
        VisionMath.layerNorm(&y, width: D, weight: try vector("vision_attn_norm_weight", block: b, count: D),
                             bias: try vector("vision_attn_norm_bias", block: b, count: D), eps: c.encoderEps)
        let attention = try attention(b, y, of: input)
        var mid = h
        for i in 0..<mid.count { mid[i] += attention[i] }
        y = mid
        VisionMath.layerNorm(&y, width: D, weight: try vector("vision_mlp_norm_weight", block: b, count: D),
                             bias: try vector("vision_mlp_norm_bias", block: b, count: D), eps: c.encoderEps)
        let mlp = try mlp(b, y)
        for i in 0..<mid.count { mid[i] += mlp[i] }
        weights.release()
        return BlockResult(attentionOut: attention, mlpOut: mlp, output: mid)
    }

    /// The MLP: `fc1(gelu_tanh(fc0 · y))`. [N, D] → [N, I] → [N, D].
    func mlp(_ b: Int, _ y: [Float]) throws(VisionError) -> [Float] {
        var u = VisionMath.linear(y, try checked("vision_mlp_up", block: b, rows: config.intermediate, cols: config.width),
                                  bias: try bias("vision_mlp_up", block: b, count: config.intermediate), threads: threads)
        let act = steps.encoderActivation
        for i in 0..<u.count { u[i] = act(u[i]) }
        return VisionMath.linear(u, try checked("vision_mlp_down", block: b, rows: config.width, cols: config.intermediate),
                                 bias: try bias("vision_mlp_down", block: b, count: config.width), threads: threads)
    }

    /// Fused qkv, 2-D RoPE on q and k, softmax attention within each entry (a packed image never sees
    /// another; a video chunk's frames see each other), output projection. y [N, D] → [N, D].
    func attention(_ b: Int, _ y: [Float], of input: VisionInput) throws(VisionError) -> [Float] {
        let c = config, D = c.width, H = c.heads, hd = c.headDim, N = input.patches
        // [N, 3D]: q = [0, D), k = [D, 2D), v = [2D, 3D), head h at [h·hd, (h+1)·hd) of each.
        var qkv = VisionMath.linear(y, try checked("vision_qkv", block: b, rows: 3 * D, cols: D),
                                    bias: try bias("vision_qkv", block: b, count: 3 * D), threads: threads)
        // RoPE: the cos and sin of each pair's angle per patch [N, hd/2], shared by q, k and every head.
        let pairs = hd / 2
        let (cosines, sines) = ropeTables(input)
        qkv.withUnsafeMutableBufferPointer { p in
            cosines.withUnsafeBufferPointer { cp in
                sines.withUnsafeBufferPointer { sp in
                    for n in 0..<N {
                        for part in 0..<2 {
                            for head in 0..<H {
                                steps.rotate(p.baseAddress! + n * 3 * D + part * D + head * hd, cp.baseAddress! + n * pairs, sp.baseAddress! + n * pairs, pairs)
                            }
                        }
                    }
                }
            }
        }
        // One task per (entry, head): softmax(q kᵀ / sqrt(hd)) v over the entry's patches only.
        let tasks = input.grids.indices.flatMap { e in (0..<H).map { (entry: e, head: $0) } }
        let scale = 1 / Float(hd).squareRoot()
        let source = qkv
        let outputs = parallelMap(count: tasks.count, width: threads) { i -> [Float] in
            let (e, head) = tasks[i]
            return Self.segmentAttention(qkv: source, width: D, start: input.starts[e], count: input.grids[e].patches, head: head, headDim: hd, scale: scale)
        }
        var context = [Float](repeating: 0, count: N * D)
        for (i, task) in tasks.enumerated() {
            let start = input.starts[task.entry], out = outputs[i]
            for n in 0..<input.grids[task.entry].patches {
                for d in 0..<hd { context[(start + n) * D + task.head * hd + d] = out[n * hd + d] }
            }
        }
        return VisionMath.linear(context, try checked("vision_attn_out", block: b, rows: D, cols: D),
                                 bias: try bias("vision_attn_out", block: b, count: D), threads: threads)
    }

    /// Per patch, the cos and sin of each RoPE pair's angle ([N, hd/2] each): the patch's (row, col) inside its
    /// frame, the same for every frame of a chunk (there is no temporal rotation).
    func ropeTables(_ input: VisionInput) -> (cos: [Float], sin: [Float]) {
        let pairs = config.headDim / 2
        let frequencies = PositionTerms.ropeFrequencies(headDim: config.headDim, theta: config.ropeTheta)
        var angles = [Float](repeating: 0, count: input.patches * pairs)
        angles.withUnsafeMutableBufferPointer { a in
            for (e, g) in input.grids.enumerated() {
                for n in 0..<g.patches {
                    let p = n % g.framePatches
                    steps.ropeAngles(p / g.w, p % g.w, frequencies, a.baseAddress! + (input.starts[e] + n) * pairs)
                }
            }
        }
        return (angles.map { Foundation.cos($0) }, angles.map { Foundation.sin($0) })
    }

    /// One head of one entry: q, k, v gathered from `qkv` [N, 3D], scores computed a block of query rows at a
    /// time (memory: 256 × count scores). → [count, hd].
    static func segmentAttention(qkv: [Float], width D: Int, start: Int, count n: Int, head: Int, headDim hd: Int, scale: Float) -> [Float] {
        var q = [Float](repeating: 0, count: n * hd), k = q
        var vT = [Float](repeating: 0, count: hd * n)  // [hd, n]: Gemm.linear multiplies by the transpose
        for i in 0..<n {
            let row = (start + i) * 3 * D + head * hd
            for d in 0..<hd {
                q[i * hd + d] = qkv[row + d]
                k[i * hd + d] = qkv[row + D + d]
                vT[d * n + i] = qkv[row + 2 * D + d]
            }
        }
        var out = [Float](repeating: 0, count: n * hd)
        let blockRows = 256
        var first = 0
        while first < n {
            let rows = min(blockRows, n - first)
            var scores = Array(q[(first * hd)..<((first + rows) * hd)])
            scores = Gemm.linear(scores, k, m: rows, n: n, k: hd)  // [rows, n]
            for r in 0..<rows {
                var maxScore = -Float.infinity
                for j in 0..<n {
                    scores[r * n + j] *= scale
                    maxScore = max(maxScore, scores[r * n + j])
                }
                var sum: Float = 0
                for j in 0..<n {
                    let e = Foundation.exp(scores[r * n + j] - maxScore)
                    scores[r * n + j] = e
                    sum += e
                }
                for j in 0..<n { scores[r * n + j] /= sum }
            }
            let o = Gemm.linear(scores, vT, m: rows, n: hd, k: n)  // [rows, hd]
            for i in 0..<(rows * hd) { out[first * hd + i] = o[i] }
            first += rows
        }
        return out
    }

    /// Refuses an activation of the wrong size (a caller's mistake, named rather than trapped on).
    func expectCount(_ x: [Float], _ count: Int, _ what: String, _ shape: String) throws(VisionError) {
        guard x.count == count else { throw .input("\(what) holds \(x.count) values, expected \(shape) = \(count)") }
    }

    /// A 1-D tensor checked to hold `count` values (the tower's sizes may be a test's, not the weights').
    func vector(_ slot: String, block: Int?, count: Int) throws(VisionError) -> [Float] {
        let v = try weights.vector(slot, block: block)
        guard v.count == count else { throw .tensor(name: try weights.name(slot, block: block), reason: "holds \(v.count) values, expected \(count)") }
        return v
    }

    /// A Linear module's bias checked to hold `count` values.
    func bias(_ slot: String, block: Int?, count: Int) throws(VisionError) -> [Float] {
        let v = try weights.bias(slot, block: block)
        guard v.count == count else { throw .tensor(name: try weights.name(slot, block: block, suffix: ".bias"), reason: "holds \(v.count) values, expected \(count)") }
        return v
    }

    /// A Linear weight checked to be `[rows, cols]`.
    func checked(_ slot: String, block: Int?, rows: Int, cols: Int) throws(VisionError) -> VisionMatrix {
        let m = try weights.matrix(slot, block: block)
        guard m.rows == rows, m.cols == cols else { throw .tensor(name: m.name, reason: "is [\(m.rows), \(m.cols)], expected [\(rows), \(cols)]") }
        return m
    }

    // MARK: - Final norm, merger, projector

    /// The final LayerNorm: [N, D] → [N, D] (transformers' `last_hidden_state`).
    public func finalNorm(_ h: [Float]) throws(VisionError) -> [Float] {
        guard h.count % config.width == 0 else { throw .input("the final norm's input holds \(h.count) values, not rows of \(config.width)") }
        var z = h
        VisionMath.layerNorm(&z, width: config.width, weight: try vector("vision_final_norm_weight", block: nil, count: config.width),
                             bias: try vector("vision_final_norm_bias", block: nil, count: config.width), eps: config.encoderEps)
        weights.release()
        return z
    }

    /// The temporal patch merger: per entry, the mean over its frames, then each kh × kw block of the grid
    /// becomes one token of kh·kw slots (slot `i·kw + j` = row offset i, column offset j), tokens row-major.
    /// z [N, D] → [M, kh·kw, D].
    public func merge(_ z: [Float], of input: VisionInput) throws(VisionError) -> [Float] {
        let c = config, D = c.width, kh = c.mergeHeight, kw = c.mergeWidth
        try expectCount(z, input.patches * D, "the merger's input", "[\(input.patches), \(D)]")
        var out: [Float] = []
        out.reserveCapacity(input.tokens(c) * c.mergeSlots * D)
        for (e, g) in input.grids.enumerated() {
            let frame = g.framePatches * D
            let frames = (0..<g.t).map { f in z[((input.starts[e] * D) + f * frame)..<((input.starts[e] * D) + (f + 1) * frame)] }
            let pooled = steps.temporalMerge(frames)  // [h·w·D]
            try expectCount(pooled, frame, "the temporal merge of entry \(e)", "[\(g.framePatches), \(D)]")
            for R in 0..<(g.h / kh) {
                for C in 0..<(g.w / kw) {
                    for i in 0..<kh {
                        for j in 0..<kw {
                            let p = (kh * R + i) * g.w + (kw * C + j)
                            out += pooled[(p * D)..<((p + 1) * D)]
                        }
                    }
                }
            }
        }
        return out
    }

    /// The projector: LayerNorm of each slot over D, the slots concatenated (kh·kw·D), Linear, exact GELU,
    /// Linear. merged [M, kh·kw, D] → [M, text_hidden].
    public func project(_ merged: [Float]) throws(VisionError) -> [Float] {
        let c = config, D = c.projectorWidth, wide = c.mergeSlots * D
        guard merged.count % wide == 0 else { throw .input("the projector's input holds \(merged.count) values, not tokens of \(c.mergeSlots) × \(D)") }
        var u = merged
        VisionMath.layerNorm(&u, width: D, weight: try vector("projector_norm_weight", block: nil, count: D),
                             bias: try vector("projector_norm_bias", block: nil, count: D), eps: c.projectorEps)
        var a = VisionMath.linear(u, try checked("projector_up", block: nil, rows: wide, cols: wide),
                                  bias: try bias("projector_up", block: nil, count: wide), threads: threads)
        let act = steps.projectorActivation
        for i in 0..<a.count { a[i] = act(a[i]) }
        let e = VisionMath.linear(a, try checked("projector_down", block: nil, rows: c.textWidth, cols: wide),
                                  bias: try bias("projector_down", block: nil, count: c.textWidth), threads: threads)
        weights.release()
        return e
    }
}
