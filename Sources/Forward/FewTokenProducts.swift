import Dispatch
import TensorCore

/// Decoding (one to `FusedKernels.maxTokens` tokens): several products computed in one parallel section.
///
/// Reading the weights is all the work of a decode step, so what matters is that every core streams weights all
/// the time. One product per thread hand-off leaves a core idle at each hand-off and at each small matrix; one
/// expert per thread leaves one idle while the other finishes the last expert. Here each worker takes the same
/// share of the rows of every matrix of a step (the gate and up projections of all routed experts and the shared
/// expert, say), so the workers finish together, with one hand-off for the whole step. `linear` of a few tokens
/// is a step of one product.
///
/// Each output row is computed by the same kernel over the same weights and input whatever the split (the
/// kernels' results do not depend on the rows they are asked for), so results are bit-identical to one kernel
/// call per matrix and do not depend on the thread count (`FewTokenTests`).
extension ForwardPass {
    /// One product of a step: `inputs[input]` [m, w.cols] times `w`ᵀ.
    struct FewTokenProduct {
        var input: Int
        var w: WeightMatrix
    }

    /// Stored elements per page release: a worker gives a large matrix's pages back every this many weights
    /// (16 MiB of BF16, 4 MiB of INT4), not per kernel call: each `madvise(MADV_DONTNEED)` of a two-thread
    /// process costs a TLB shootdown on the other core.
    static let fewTokenReleaseElements = 1 << 23

    /// Matrices of at most this many stored elements (128 MiB of BF16: every matrix of a K2.5 decoder layer, the
    /// dense MLP's excepted) keep their pages until their step ends, then give them back whole, from one thread
    /// while the others wait; larger ones (the dense MLP, lm_head) are released every `fewTokenReleaseElements` as
    /// they go. Releasing while both cores stream cost each `madvise` a TLB shootdown of the other core, and ranges
    /// that end inside a 2 MiB page split it (`perf` of one token through a K2.5 MoE layer: 6–7 ms of CPU releasing
    /// pages in chunks, 2 ms at the end of each step). Resident weights peak at the largest step's (the 8 routed
    /// experts' and the shared expert's gate and up projections of a K2.5 layer: 191 MB).
    static let fewTokenHeldElements = 1 << 26

    /// Whether `products` can go through `fewTokenProducts`: at most `FusedKernels.maxTokens` rows per input and
    /// a fused kernel for every matrix.
    func fewTokenEligible(_ inputs: [[Float]], _ products: [FewTokenProduct]) -> Bool {
        products.allSatisfy { p in
            let x = inputs[p.input]
            return p.w.cols > 0 && x.count % p.w.cols == 0 && x.count / p.w.cols <= FusedKernels.maxTokens && FusedKernels.supports(p.w)
        }
    }

    /// `inputs[p.input] · p.wᵀ` for every product p ([m, w.rows] each, m = the input's rows), in one parallel
    /// section over `workers` threads (default: the pass's). Needs `fewTokenEligible`.
    func fewTokenProducts(_ inputs: [[Float]], _ products: [FewTokenProduct], workers: Int? = nil) -> [[Float]] {
        precondition(fewTokenEligible(inputs, products), "fewTokenProducts: more tokens than the fused kernels take, or a matrix without one")
        // One flat buffer for the inputs and one for the outputs, so the workers share two pointers.
        var inputStart: [Int] = [], flatInputs: [Float] = []
        for x in inputs {
            inputStart.append(flatInputs.count)
            flatInputs += x
        }
        var outputStart: [Int] = [], total = 0, elements = 0
        for p in products {
            outputStart.append(total)
            total += inputs[p.input].count / p.w.cols * p.w.rows
            elements += p.w.rows * p.w.cols
        }
        var flatOutputs = [Float](repeating: 0, count: total)
        let inputOffsets = inputStart, outputOffsets = outputStart
        // Small steps are not worth a thread hand-off.
        let width = elements < (1 << 16) ? 1 : max(1, workers ?? threads)
        flatInputs.withUnsafeBufferPointer { xp in
            flatOutputs.withUnsafeMutableBufferPointer { yp in
                let input = SendablePointer(UnsafeMutablePointer(mutating: xp.baseAddress!)), output = SendablePointer(yp.baseAddress!)
                let body: @Sendable (Int) -> Void = { worker in
                    // Odd workers take the products in reverse order: a step that mixes INT4 matrices (bound by
                    // arithmetic) with BF16 ones (bound by memory) then runs one kind on each core at a time.
                    let order = worker % 2 == 0 ? Array(products.indices) : products.indices.reversed()
                    for i in order {
                        let p = products[i]
                        let w = p.w, m = inputs[p.input].count / w.cols
                        // Shares in whole tiles of four rows (the kernels' blocking), the last share the rest.
                        let share = (w.rows + width - 1) / width
                        let tile = (share + 3) / 4 * 4
                        var start = min(w.rows, worker * tile)
                        let end = worker == width - 1 ? w.rows : min(w.rows, start + tile)
                        // Very large matrices give their pages back as they go (as `linear`); the others when the
                        // step ends.
                        let chunk = max(4, Self.fewTokenReleaseElements / w.cols)
                        let releaseAfterUse = w.rows > chunk && w.rows * w.cols > Self.fewTokenHeldElements
                        while start < end {
                            let count = min(chunk, end - start)
                            FusedKernels.rows(
                                w, start..<(start + count), x: input.pointer + inputOffsets[p.input], m: m,
                                y: output.pointer + outputOffsets[i], ldy: w.rows)
                            if releaseAfterUse { w.releaseRows(start..<(start + count)) }
                            start += count
                        }
                    }
                }
                if width == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: width, execute: body) }
            }
        }
        for p in products where p.w.rows * p.w.cols <= Self.fewTokenHeldElements { p.w.releaseRows(0..<p.w.rows) }
        return products.indices.map { i in
            let count = inputs[products[i].input].count / products[i].w.cols * products[i].w.rows
            return Array(flatOutputs[outputStart[i]..<(outputStart[i] + count)])
        }
    }

    /// `a.x · a.wᵀ` and `b.x · b.wᵀ`: one step of `fewTokenProducts` when both are eligible, else `linear` each.
    func linearPair(_ a: (x: [Float], w: WeightMatrix), _ b: (x: [Float], w: WeightMatrix)) -> ([Float], [Float]) {
        let products = [FewTokenProduct(input: 0, w: a.w), FewTokenProduct(input: 1, w: b.w)]
        guard !a.x.isEmpty, !b.x.isEmpty, fewTokenEligible([a.x, b.x], products) else { return (linear(a.x, a.w), linear(b.x, b.w)) }
        let y = fewTokenProducts([a.x, b.x], products)
        return (y[0], y[1])
    }
}
