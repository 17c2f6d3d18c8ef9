import Dispatch
import Forward
import Foundation

/// The small kernels of the vision pass: LayerNorm, the two GELUs, Linear with a bias.
public enum VisionMath {
    /// `(x − mean) / sqrt(var + eps) · weight + bias` per row of `width` (biased variance), in place.
    /// Mean and variance are accumulated in double: the result does not depend on the summation order.
    public static func layerNorm(_ x: inout [Float], width: Int, weight: [Float], bias: [Float], eps: Float) {
        precondition(weight.count == width && bias.count == width && width > 0 && x.count % width == 0, "layerNorm: sizes do not match")
        let rows = x.count / width
        x.withUnsafeMutableBufferPointer { p in
            for r in 0..<rows {
                let row = p.baseAddress! + r * width
                var sum = 0.0
                for j in 0..<width { sum += Double(row[j]) }
                let mean = sum / Double(width)
                var squares = 0.0
                for j in 0..<width {
                    let d = Double(row[j]) - mean
                    squares += d * d
                }
                let inv = 1 / (squares / Double(width) + Double(eps)).squareRoot()
                for j in 0..<width { row[j] = Float((Double(row[j]) - mean) * inv) * weight[j] + bias[j] }
            }
        }
    }

    /// `0.5·x·(1 + tanh(sqrt(2/π)·(x + 0.044715·x³)))`: the encoder MLP's GELU (`gelu_pytorch_tanh`).
    @Sendable public static func geluTanh(_ x: Float) -> Float {
        let c: Float = 0.7978845608028654  // sqrt(2/π)
        return 0.5 * x * (1 + Foundation.tanh(c * (x + 0.044715 * x * x * x)))
    }

    /// `0.5·x·(1 + erf(x/√2))`: the projector's exact GELU (`nn.GELU()`).
    @Sendable public static func geluErf(_ x: Float) -> Float {
        0.5 * x * (1 + Foundation.erf(x * 0.7071067811865476))
    }

    /// `y = x · Wᵀ + b`: x [rows, in] → [rows, out]. W's rows are split among `threads` workers; each decodes
    /// its rows into float32 blocks of at most 4 MiB and multiplies them (Forward's GEMM) into its columns of
    /// y, so the decoded weights never exceed a few blocks and the result does not depend on the thread count.
    static func linear(_ x: [Float], _ w: VisionMatrix, bias: [Float]?, threads: Int) -> [Float] {
        precondition(w.cols > 0 && x.count % w.cols == 0, "linear: input width does not match \(w.name)")
        let rows = x.count / w.cols
        var y = [Float](repeating: 0, count: rows * w.rows)
        guard rows > 0 else { return y }
        let blockRows = max(1, min(w.rows, (1 << 20) / w.cols))
        let width = w.rows * w.cols < (1 << 16) ? 1 : max(1, min(threads, (w.rows + blockRows - 1) / blockRows))
        let share = (w.rows + width - 1) / width
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
                        start += count
                    }
                }
                if width == 1 { body(0) } else { DispatchQueue.concurrentPerform(iterations: width, execute: body) }
            }
        }
        if let bias {
            precondition(bias.count == w.rows, "linear: bias of \(w.name) does not match")
            for r in 0..<rows { for j in 0..<w.rows { y[r * w.rows + j] += bias[j] } }
        }
        return y
    }
}

/// A raw pointer handed to workers that read it or write disjoint ranges of it.
struct SendablePointer: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ pointer: UnsafeMutablePointer<Float>) { self.pointer = pointer }
}
