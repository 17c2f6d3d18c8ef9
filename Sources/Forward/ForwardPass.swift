import Dispatch
import Foundation
import TensorCore

/// The reference forward pass of the DeepSeek-V3 / Kimi K2.x language model in float32, written for clarity:
/// one function per block, shapes in comments. Activations are row-major `[rows, width]` with
/// `rows = batch × tokens`; every sequence starts at position 0, causal, no padding.
/// Weights are decoded from their stored form a block of rows at a time, so memory stays bounded by one layer's
/// largest block plus activations.
public final class ForwardPass: LanguageModelPass {
    public let weights: any WeightSource
    public let threads: Int
    /// Test-only departures from the reference (`ForwardVariant`); `.none` on every public path.
    let variant: ForwardVariant
    let inverseFrequencies: [Float]
    var config: ForwardConfig { weights.forward }
    public var forward: ForwardConfig { weights.forward }
    public var dequant: Dequantization { weights.dequant }

    /// The shape of a batch of sequences.
    public struct Batch: Sendable, Equatable {
        public var sequences: Int
        public var tokens: Int
        public var rows: Int { sequences * tokens }
        public init(sequences: Int, tokens: Int) {
            self.sequences = sequences
            self.tokens = tokens
        }
    }

    /// What one decoder layer produced.
    public struct LayerResult: Sendable {
        /// `[rows, hidden]` each.
        public var attentionOut: [Float]
        public var mlpOut: [Float]
        public var output: [Float]
        /// MoE layers: `[rows, top_k]` chosen experts, and per row the gap between the k-th and (k+1)-th
        /// selection score (how close the choice was to flipping).
        public var topK: [Int32]?
        public var margins: [Float]?
    }

    /// What a MoE block produced: `[rows, hidden]`, and the routing (`[rows, top_k]` experts, per-row margins).
    struct MoEOutput {
        var out: [Float]
        var topK: [Int32]
        var margins: [Float]
    }

    public convenience init(weights: any WeightSource, threads: Int = ProcessInfo.processInfo.activeProcessorCount) {
        self.init(weights: weights, threads: threads, variant: .none)
    }

    /// The test hook: a pass with deliberate bugs (`ForwardVariant`), for the parity tests.
    init(weights: any WeightSource, threads: Int, variant: ForwardVariant) {
        self.weights = variant == .none ? weights : VariantWeights(weights, variant: variant)
        self.threads = max(1, threads)
        self.variant = variant
        inverseFrequencies = self.weights.forward.rope.inverseFrequencies
        // Parallelism is ours (weight rows, experts, heads); OpenBLAS runs single-threaded inside each worker,
        // which avoids its threads spinning against ours on small products.
        Gemm.threads = 1
    }

    // MARK: - Whole model

    /// `ids` [rows] → hidden states [rows, hidden]. A rank holding a block of the vocabulary fills the rows of
    /// its own tokens and leaves the others zero (the ranks' sum is the whole lookup).
    public func embed(_ ids: [Int32]) throws(ForwardError) -> [Float] {
        let table = try weights.matrix(.embedding, layer: nil)
        let first = try weights.firstRow(.embedding, layer: nil)
        var h = [Float](repeating: 0, count: ids.count * config.hiddenSize)
        for (r, id) in ids.enumerated() {
            guard id >= 0, Int(id) < config.vocabSize else {
                throw .input("token id \(id) at position \(r) is outside the vocabulary of \(config.vocabSize)")
            }
            let row = Int(id) - first
            guard row >= 0, row < table.rows else { continue }
            h.withUnsafeMutableBufferPointer { table.decodeRows(row..<(row + 1), into: $0.baseAddress! + r * config.hiddenSize) }
        }
        weights.releaseViewed()
        return h
    }

    /// Final RMSNorm: [rows, hidden] → [rows, hidden].
    public func finalNorm(_ h: [Float]) throws(ForwardError) -> [Float] {
        var x = h
        rmsNorm(&x, width: config.hiddenSize, weight: try weights.vector(.finalNorm, layer: nil), eps: config.rmsNormEps)
        return x
    }

    /// The slot lm_head reads (the embedding when they are tied).
    var headSlot: WeightSlot { config.text.tieWordEmbeddings ? .embedding : .lmHead }

    /// lm_head: [rows, hidden] → logits [rows, vocab] (a rank: its block of the vocabulary).
    public func logits(_ normed: [Float]) throws(ForwardError) -> [Float] {
        let y = linear(normed, try weights.matrix(headSlot, layer: nil))
        weights.releaseViewed()
        return y
    }

    // MARK: - Decoder layer

    /// `h += attention(rmsnorm(h)); h += mlp(rmsnorm(h))`, input and output [rows, hidden].
    public func layer(_ index: Int, input h: [Float], batch: Batch) throws(ForwardError) -> LayerResult {
        let w = try LayerWeights(weights, layer: index)
        let result = try decoderLayer(w, input: h, batch: batch, blocks: OwnBlocks(pass: self, weights: w))
        weights.releaseViewed()
        return result
    }

    /// This pass's own blocks, computed from its bound weights.
    struct OwnBlocks: DecoderBlocks {
        let pass: ForwardPass
        let weights: LayerWeights
        func attention(_ x: [Float], batch: Batch) throws(ForwardError) -> [Float] {
            try pass.attention(weights.attention, layer: weights.index, x, batch: batch)
        }
        func denseMLP(_ x: [Float]) throws(ForwardError) -> [Float] {
            guard case .dense(let mlp) = weights.mlp else { preconditionFailure("denseMLP on a MoE layer") }
            return pass.mlp(x, mlp)
        }
        func moe(_ x: [Float], rows: Int) throws(ForwardError) -> MoEOutput {
            guard case .moe(let moe) = weights.mlp else { preconditionFailure("moe on a dense layer") }
            return try pass.moe(moe, x, rows: rows)
        }
    }

    /// One decoder layer around its attention and MLP blocks (this model's own, or a sharded model's combined
    /// from its ranks'): the norms and residual adds are the same either way. `w` supplies the norms.
    func decoderLayer(_ w: LayerWeights, input h: [Float], batch: Batch, blocks: some DecoderBlocks) throws(ForwardError) -> LayerResult {
        let H = config.hiddenSize
        precondition(h.count == batch.rows * H, "layer input does not match the batch")
        var x = h
        rmsNorm(&x, width: H, weight: w.inputNorm, eps: config.rmsNormEps)
        let attention = try blocks.attention(x, batch: batch)
        var mid = h
        for i in 0..<mid.count { mid[i] += attention[i] }
        var y = mid
        rmsNorm(&y, width: H, weight: w.postAttentionNorm, eps: config.rmsNormEps)
        var result = LayerResult(attentionOut: attention, mlpOut: [], output: [], topK: nil, margins: nil)
        try PhaseTimes.measure(.mlp) { () throws(ForwardError) in
            if config.isMoELayer(w.index) {
                let moe = try blocks.moe(y, rows: batch.rows)
                result.mlpOut = moe.out
                result.topK = moe.topK
                result.margins = moe.margins
            } else {
                result.mlpOut = try blocks.denseMLP(y)
            }
        }
        for i in 0..<mid.count { mid[i] += result.mlpOut[i] }
        result.output = mid
        return result
    }

    // MARK: - MLPs and experts

    /// SwiGLU: `down(silu(gate·x) ⊙ up·x)`. x [rows, in] → [rows, out].
    func mlp(_ x: [Float], _ w: MLPWeights, workers: Int? = nil) -> [Float] {
        var g = linear(x, w.gate, workers: workers)
        Self.swiGLU(&g, linear(x, w.up, workers: workers))
        return linear(g, w.down, workers: workers)
    }

    /// `g = silu(g) ⊙ u` element by element, `g / (1 + exp(−g)) · u`: the one formula of every MLP path (`mlp`,
    /// `fewTokenExperts`), so that they agree bit for bit.
    static func swiGLU(_ g: inout [Float], _ u: [Float]) {
        precondition(g.count == u.count, "swiGLU: sizes do not match")
        g.withUnsafeMutableBufferPointer { gp in
            u.withUnsafeBufferPointer { up in
                for i in 0..<gp.count { gp[i] = gp[i] / (1 + Foundation.exp(-gp[i])) * up[i] }
            }
        }
    }

    /// The MoE block's sum: for each of an expert's rows (`list`, in order; its output `y`, `[list.count, width]`),
    /// `out[row] += y[j] · weight`.
    static func addWeighted(_ y: UnsafePointer<Float>, _ list: [(row: Int, weight: Float)], into out: UnsafeMutablePointer<Float>, width: Int) {
        for (j, item) in list.enumerated() {
            let dst = out + item.row * width, src = y + j * width, weight = item.weight
            for d in 0..<width { dst[d] += src[d] * weight }
        }
    }

    /// `out += shared` (the shared expert's output, `[rows, width]` both), the rows split among `workers`.
    static func addShared(_ shared: [Float], into out: inout [Float], width: Int, workers: Int) {
        precondition(shared.count == out.count, "moe: the shared expert's output does not match the rows")
        let rows = width == 0 ? 0 : out.count / width
        let parts = out.count < (1 << 16) ? 1 : max(1, min(workers, rows))
        let share = (rows + parts - 1) / max(parts, 1)
        out.withUnsafeMutableBufferPointer { op in
            shared.withUnsafeBufferPointer { sp in
                let dst = SendablePointer(op.baseAddress!), src = SendablePointer(UnsafeMutablePointer(mutating: sp.baseAddress!))
                let body: @Sendable (Int) -> Void = { part in
                    let start = min(rows, part * share) * width, end = min(rows, (part + 1) * share) * width
                    for i in start..<end { dst.pointer[i] += src.pointer[i] }
                }
                if parts == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: parts, execute: body) }
            }
        }
    }

    /// Routing (`Router.route`) and the weighted sum of the chosen experts, plus the shared expert.
    /// x [rows, hidden] → [rows, hidden]. A rank of a sharded model adds what its partition says it adds (the
    /// experts it holds, its block of the shared expert); the router is everyone's.
    /// `stepwise` (tests: false) lets a few tokens take `fewTokenExperts`.
    func moe(_ w: MoEWeights, _ x: [Float], rows: Int, stepwise: Bool = true) throws(ForwardError) -> MoEOutput {
        let routing = config.routing, H = config.hiddenSize, E = routing.experts, k = routing.topK
        var laps = PhaseTimes.Laps()
        let logits = linear(x, w.router)           // [rows, E], float32
        var chosen = [Int32](repeating: 0, count: rows * k)
        var margins = [Float](repeating: 0, count: rows)
        var routeWeights = [Float](repeating: 0, count: rows * k)
        let variantRoutes = variant.applies(to: w.layer) && (variant.routerBiasIgnored || variant.routerBiasInWeights)
        let variant = self.variant, bias = w.routerBias
        // Each row's route on its own (a pure function of its logits), the rows split among the workers.
        chosen.withUnsafeMutableBufferPointer { cp in
            margins.withUnsafeMutableBufferPointer { mp in
                routeWeights.withUnsafeMutableBufferPointer { wp in
                    let chosenOut = SendablePointer(cp.baseAddress!), marginOut = SendablePointer(mp.baseAddress!)
                    let weightOut = SendablePointer(wp.baseAddress!)
                    let width = rows < 64 ? 1 : threads
                    let share = (rows + width - 1) / width
                    let body: @Sendable (Int) -> Void = { worker in
                        for r in (worker * share)..<min(rows, (worker + 1) * share) {
                            let row = logits[(r * E)..<((r + 1) * E)]
                            let route = variantRoutes
                                ? variant.route(logits: row, bias: bias, routing: routing)
                                : Router.route(logits: row, bias: bias, routing: routing)
                            marginOut.pointer[r] = route.margin
                            for j in 0..<k {
                                chosenOut.pointer[r * k + j] = Int32(route.experts[j])
                                weightOut.pointer[r * k + j] = route.weights[j]
                            }
                        }
                    }
                    if width == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: width, execute: body) }
                }
            }
        }
        laps.lap(.moeRouter)
        var assigned = [[(row: Int, weight: Float)]](repeating: [], count: E)
        for r in 0..<rows { for j in 0..<k { assigned[Int(chosen[r * k + j])].append((r, routeWeights[r * k + j])) } }
        let held = (weights.partition?.addsRoutedExperts ?? true) ? weights.experts.clamped(to: 0..<E) : 0..<0
        let active = held.filter { !assigned[$0].isEmpty }
        let lists = active.map { assigned[$0] }
        let experts = try active.map { e throws(ForwardError) in try w.expert(e, in: weights) }
        // Expert i's rows of x, gathered (for many tokens, inside the worker that runs it: one at a time per worker).
        let gather: @Sendable (Int) -> [Float] = { i in
            [Float](unsafeUninitializedCapacity: lists[i].count * H) { buffer, count in
                x.withUnsafeBufferPointer { xp in
                    for (j, item) in lists[i].enumerated() { (buffer.baseAddress! + j * H).initialize(from: xp.baseAddress! + item.row * H, count: H) }
                }
                count = lists[i].count * H
            }
        }
        let sharedWeights = weights.partition?.addsSharedExpert ?? true ? w.shared : nil
        // out[r] = Σ weight · expert(x[r]) in expert (`lists`) order, then + shared[r]: the same order whatever the
        // thread count or the schedule.
        var out = [Float](repeating: 0, count: rows * H)
        if stepwise, rows <= FusedKernels.maxTokens,
            let step = fewTokenExperts(experts, inputs: active.indices.map(gather), shared: sharedWeights, x: x) {
            laps.lap(.moeExperts)
            out.withUnsafeMutableBufferPointer { op in
                step.routed.withUnsafeBufferPointer { rp in
                    var at = 0
                    for list in lists {
                        Self.addWeighted(rp.baseAddress! + at, list, into: op.baseAddress!, width: H)
                        at += list.count * H
                    }
                    precondition(at == rp.count, "moe: expert outputs do not match the routed rows")
                }
            }
            if let shared = step.shared { Self.addShared(shared, into: &out, width: H, workers: 1) }
        } else {
            // The shared expert (if any) and the routed experts in order are the jobs of one schedule, one job per
            // worker at a time, each job's products on that worker alone: the shared expert first (the largest:
            // every row), while the other workers take the routed experts. Each routed expert's output is added into
            // `out` as soon as those before it have been (`ExpertSums`), by the worker that finds it next in line:
            // no buffer of every expert's rows, no pass of its own for the sum, and the workers' ends nearly
            // together. The shared expert's output is added after all of them.
            let sharedJobs = sharedWeights == nil ? 0 : 1
            // A thread of its own asks for the experts' weights in that order, up to `expertReadAhead` experts ahead of
            // those finished, so the storage reads them while the workers multiply (a layer's experts may not all be
            // in the page cache; asking can wait for the device, which would stall a worker). Not for a few tokens
            // (decoding a model without fused kernels): a thread per layer and step costs more than it saves there.
            let window = DispatchSemaphore(value: Self.expertReadAhead)
            let sums = ExpertSums()
            let run = {
                out.withUnsafeMutableBufferPointer { op in
                    let output = SendablePointer(op.baseAddress!)
                    return parallelMap(count: sharedJobs + experts.count, width: self.threads) { job -> [Float]? in
                        if job < sharedJobs, let sharedWeights { return self.mlp(x, sharedWeights, workers: 1) }
                        let i = job - sharedJobs
                        let y = self.mlp(gather(i), experts[i], workers: 1)
                        window.signal()
                        sums.finished(i, y) { i, y in
                            y.withUnsafeBufferPointer { Self.addWeighted($0.baseAddress!, lists[i], into: output.pointer, width: H) }
                        }
                        return nil
                    }
                }
            }
            let results = rows > FusedKernels.maxTokens
                ? withSideJob({
                    for expert in experts {
                        window.wait()
                        expert.prefetch()
                    }
                }, while: run).0
                : run()
            precondition(sums.added == experts.count, "moe: not every expert's output was added")
            laps.lap(.moeExperts)
            if sharedJobs == 1, let shared = results[0] { Self.addShared(shared, into: &out, width: H, workers: threads) }
        }
        laps.lap(.moeSum)
        return MoEOutput(out: out, topK: chosen, margins: margins)
    }

    /// Routed experts whose weights are asked for ahead of those finished in the MoE block of many tokens
    /// (`WeightMatrix.prefetch`): 8 of K2.5's are 180 MB of INT4.
    static let expertReadAhead = 8

    /// Decoding: the routed experts' MLPs (`inputs[i]` through `experts[i]`) and the shared expert's (x) in two
    /// steps of `fewTokenProducts` — every gate and up projection, then every down projection — each worker
    /// taking its share of every matrix's rows. Returns the experts' outputs concatenated in order and the shared
    /// expert's, bit-identical to `mlp` on each; nil when a matrix has no fused kernel or there are too many
    /// tokens.
    func fewTokenExperts(_ experts: [MLPWeights], inputs: [[Float]], shared: MLPWeights?, x: [Float]) -> (routed: [Float], shared: [Float]?)? {
        let all = experts + (shared.map { [$0] } ?? [])
        let allInputs = inputs + (shared == nil ? [] : [x])
        let gateUp = all.indices.flatMap { i in [FewTokenProduct(input: i, w: all[i].gate), FewTokenProduct(input: i, w: all[i].up)] }
        guard !all.isEmpty, fewTokenEligible(allInputs, gateUp), all.allSatisfy({ FusedKernels.supports($0.down) }) else { return nil }
        let gu = fewTokenProducts(allInputs, gateUp)
        let hidden = all.indices.map { i in
            var g = gu[2 * i]
            Self.swiGLU(&g, gu[2 * i + 1])
            return g
        }
        let outs = fewTokenProducts(hidden, all.indices.map { FewTokenProduct(input: $0, w: all[$0].down) })
        return (outs.prefix(experts.count).flatMap { $0 }, shared == nil ? nil : outs.last)
    }

    // MARK: - Kernels

    /// `x · rsqrt(mean(x²) + eps) · weight` per row, in place.
    func rmsNorm(_ x: inout [Float], width: Int, weight: [Float], eps: Float) {
        precondition(weight.count == width && x.count % max(width, 1) == 0, "rmsNorm: sizes do not match")
        let rows = width == 0 ? 0 : x.count / width
        weight.withUnsafeBufferPointer { wp in
            x.withUnsafeMutableBufferPointer { xp in
                for r in 0..<rows {
                    let row = xp.baseAddress! + r * width
                    var sum: Float = 0
                    for j in 0..<width { sum += row[j] * row[j] }
                    let inv = 1 / (sum / Float(width) + eps).squareRoot()
                    for j in 0..<width { row[j] = row[j] * inv * wp[j] }
                }
            }
        }
    }

    /// Inputs of at least this many floats (4 MiB: a few hundred tokens at full width) are multiplied by larger
    /// decoded blocks in `linear`.
    static let largeInput = 1 << 20

    /// `y = x · Wᵀ`: x [rows, in] → y [rows, out]. W's rows are split among `workers` threads; each decodes
    /// its rows into float32 blocks of at most 4 MiB (32 MiB for a large input) and multiplies them
    /// (single-threaded OpenBLAS) into its columns of y. Work is split by weight rows, so the result does not
    /// depend on the thread count. A few tokens over a matrix with a fused kernel go to `fewTokenProducts` instead;
    /// more tokens over exact INT4 weights to `int4Linear` where the CPU has its kernel (AVX2 + FMA).
    func linear(_ x: [Float], _ w: WeightMatrix, workers: Int? = nil) -> [Float] {
        precondition(w.cols > 0 && x.count % w.cols == 0, "linear: input width does not match \(w.name)")
        let rows = x.count / w.cols
        // Decoding: the fused kernels straight from the stored weights (FewTokenProducts).
        if rows > 0, w.rows > 0, fewTokenEligible([x], [FewTokenProduct(input: 0, w: w)]) {
            return fewTokenProducts([x], [FewTokenProduct(input: 0, w: w)], workers: workers)[0]
        }
        // Prefill through INT4 weights: the product decodes them a panel at a time itself (no float block).
        if rows > 0, w.rows > 0, case let .packed(codes, scales, group, _, _, _) = w.storage, FusedKernels.supports(w),
            Kernels.hasInt4Gemm(), !Self.plainPrefill {
            return int4Linear(x, w, rows: rows, codes: codes, scales: scales, group: group, workers: workers)
        }
        var y = [Float](repeating: 0, count: rows * w.rows)
        guard rows > 0, w.rows > 0 else { return y }
        // Blocks of at most 4 MiB of float32; 32 MiB when the input is large (prefill), as the product packs the
        // whole input once per block: bigger blocks pack it fewer times.
        let large = x.count >= Self.largeInput && !Self.plainPrefill
        let maxBlockRows = max(1, min(w.rows, (large ? 8 << 20 : 1 << 20) / w.cols))
        // Small matrices are not worth a thread hand-off. A large input splits every matrix among the workers.
        let width = w.rows * w.cols < (1 << 16) ? 1 : min(workers ?? threads, large ? w.rows : (w.rows + maxBlockRows - 1) / maxBlockRows)
        let share = (w.rows + width - 1) / width
        let blockRows = large ? min(maxBlockRows, share) : maxBlockRows
        // Matrices larger than a block give their pages back as they go (routed experts are small and may be
        // used again by the next token group; they are released with the layer).
        let releaseAfterUse = w.rows > max(1, (1 << 20) / w.cols)
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeMutableBufferPointer { yp in
                let input = SendablePointer(UnsafeMutablePointer(mutating: xp.baseAddress!)), output = SendablePointer(yp.baseAddress!)
                let body: @Sendable (Int) -> Void = { worker in
                    let block = UnsafeMutablePointer<Float>.allocate(capacity: blockRows * w.cols)
                    defer { block.deallocate() }
                    var start = worker * share
                    let end = min(w.rows, start + share)
                    while start < end {
                        let count = min(blockRows, end - start)
                        w.decodeRows(start..<(start + count), into: block)
                        Gemm.linear(input.pointer, block, output.pointer + start, m: rows, n: count, k: w.cols, ldy: w.rows)
                        if releaseAfterUse { w.releaseRows(start..<(start + count)) }
                        start += count
                    }
                }
                if width == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: width, execute: body) }
            }
        }
        return y
    }

    /// `linear` of many tokens through INT4 weights (`Kernels.int4Gemm`): the rows are split among the workers in
    /// whole blocks of 32 rows (the AVX-512 tile's panel, two of the AVX2 tile's), each worker's rows multiplied in
    /// chunks of whole blocks of at most `fewTokenReleaseElements` weights whose pages are released after use when
    /// the matrix is larger than a chunk. Each output is the kernel's one chain over the columns, so the result
    /// depends neither on the split nor on the thread count.
    func int4Linear(_ x: [Float], _ w: WeightMatrix, rows: Int, codes: TensorView, scales: TensorView, group: Int, workers: Int?) -> [Float] {
        let panels = (w.rows + 31) / 32
        let width = w.rows * w.cols < (1 << 16) ? 1 : min(workers ?? threads, panels)
        let share = (panels + width - 1) / width * 32
        let chunk = max(32, Self.fewTokenReleaseElements / w.cols / 32 * 32)
        let releaseAfterUse = w.rows > chunk
        let workspace = Kernels.int4GemmWorkspace(cols: w.cols)
        // The kernel's tile adds into the outputs of 12–14 tokens at once, rows of y `ldy` floats apart. When that is
        // a multiple of 2 KiB (the expert shapes: 2,048 and 7,168 rows), those rows fall into the same few sets of
        // the L1 cache and evict each other on every tile (about 10 % of the kernel's time at 85 tokens); the kernel
        // then writes rows 32 floats further apart, and each worker packs its columns into y after. Same bits.
        let ldy = w.rows % 512 == 0 ? w.rows + 32 : w.rows
        return [Float](unsafeUninitializedCapacity: rows * w.rows) { yp, count in
            let staged = ldy == w.rows ? nil : UnsafeMutablePointer<Float>.allocate(capacity: rows * ldy)
            defer { staged?.deallocate() }
            x.withUnsafeBufferPointer { xp in
                let input = SendablePointer(UnsafeMutablePointer(mutating: xp.baseAddress!)), output = SendablePointer(yp.baseAddress!)
                let kernelOutput = SendablePointer(staged ?? yp.baseAddress!)
                let body: @Sendable (Int) -> Void = { worker in
                    let work = UnsafeMutablePointer<Float>.allocate(capacity: workspace)
                    defer { work.deallocate() }
                    let begin = min(w.rows, worker * share), end = min(w.rows, begin + share)
                    var start = begin
                    while start < end {
                        let n = min(chunk, end - start)
                        Kernels.int4Gemm(
                            words: codes.bytes.baseAddress!, scales: scales.bytes.baseAddress!, rows: start..<(start + n), cols: w.cols,
                            group: group, x: input.pointer, m: rows, y: kernelOutput.pointer, ldy: ldy, work: work)
                        if releaseAfterUse { w.releaseRows(start..<(start + n)) }
                        start += n
                    }
                    if ldy != w.rows, begin < end {
                        for t in 0..<rows {
                            (output.pointer + t * w.rows + begin).initialize(from: kernelOutput.pointer + t * ldy + begin, count: end - begin)
                        }
                    }
                }
                if width == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: width, execute: body) }
            }
            count = rows * w.rows
        }
    }
}

/// A language model's forward pass, block by block: one model's (`ForwardPass`) or a sharded model's, whose
/// ranks' partial results are combined as the collectives of a real deployment would (`ShardedForward`).
public protocol LanguageModelPass: AnyObject, Sendable {
    /// The whole model's configuration.
    var forward: ForwardConfig { get }
    var dequant: Dequantization { get }
    func embed(_ ids: [Int32]) throws(ForwardError) -> [Float]
    func layer(_ index: Int, input h: [Float], batch: ForwardPass.Batch) throws(ForwardError) -> ForwardPass.LayerResult
    func finalNorm(_ h: [Float]) throws(ForwardError) -> [Float]
    func logits(_ normed: [Float]) throws(ForwardError) -> [Float]
    /// Layer `index` over several batches, its weights bound once and (with `release`) released after the last
    /// (`LayerMajorForward`); each batch's arithmetic is that of `layer(_:input:batch:)` alone.
    func layerGroups(_ index: Int, groups: [[Float]], batches: [ForwardPass.Batch], release: Bool) throws(ForwardError) -> [[Float]]
}

extension LanguageModelPass {
    /// The whole model: token ids [rows] → logits [rows, vocab], layer by layer.
    public func logits(for ids: [Int32], batch: ForwardPass.Batch) throws(ForwardError) -> [Float] {
        var h = try embed(ids)
        for l in 0..<forward.numLayers { h = try layer(l, input: h, batch: batch).output }
        return try logits(finalNorm(h))
    }
}

/// A decoder layer's parallel blocks, as one pass computes them from its own weights (`ForwardPass.OwnBlocks`)
/// or as a sharded model's ranks' partial results combine (`ShardedForward.CombinedBlocks`).
protocol DecoderBlocks {
    /// x = rmsnorm(h) [rows, hidden] → [rows, hidden].
    func attention(_ x: [Float], batch: ForwardPass.Batch) throws(ForwardError) -> [Float]
    func denseMLP(_ x: [Float]) throws(ForwardError) -> [Float]
    func moe(_ x: [Float], rows: Int) throws(ForwardError) -> ForwardPass.MoEOutput
}

/// The MoE block's routed experts' outputs, added into its output in expert order as they finish in any order:
/// an expert's output waits until those before it have been added; whichever worker finds the next one ready adds
/// it (and any after it that are ready) while the others go on multiplying.
final class ExpertSums: @unchecked Sendable {
    private let lock = NSLock()
    private var waiting: [Int: [Float]] = [:]
    private var next = 0
    private var adding = false

    /// Experts added so far.
    var added: Int { lock.withLock { next } }

    /// Expert `i` finished with output `y`; `add(j, y)` adds expert j's output, called in order of j, one at a time.
    func finished(_ i: Int, _ y: [Float], add: (Int, [Float]) -> Void) {
        lock.lock()
        waiting[i] = y
        guard !adding else { return lock.unlock() }
        adding = true
        while let ready = waiting.removeValue(forKey: next) {
            let j = next
            lock.unlock()
            add(j, ready)
            lock.lock()
            next += 1
        }
        adding = false
        lock.unlock()
    }
}
