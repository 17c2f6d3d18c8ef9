import TensorCore

/// Few-token products computed straight from the stored weights, without writing decoded floats to memory:
/// when a handful of tokens go through a layer (decoding), reading the weights is all the work, and a decode
/// pass followed by a matrix product reads and writes every weight twice more.
enum FusedKernels {
    /// Largest token count handled here; more tokens amortize a decoded block over a real matrix product.
    static let maxTokens = 4

    /// Whether `w` has a fused kernel (BF16 / F32 plain, INT4 exact with BF16 scales and whole groups of 8k,
    /// rows served as ggml blocks of a type `GGMLBlocks` knows unless `K2PACK_KERNELS` asks to dequantize them).
    static func supports(_ w: WeightMatrix) -> Bool {
        switch w.storage {
        case .plain(let view): return (view.dtype == .bf16 || view.dtype == .f32) && w.cols % 8 == 0
        case let .packed(_, scales, group, bits, dequant, highFirst):
            return bits == 4 && group % 8 == 0 && w.cols % group == 0 && dequant == .exact && !highFirst && scales.dtype == .bf16
        case .rows(let decoder): return decoder.ggmlBlocks != nil && !Kernels.ggmlDequantize
        case .fp8Block: return false
        }
    }

    /// `y[t, r] = Σ_c x[t, c] · W[r, c]` for rows `rows` and tokens `0..<m`; y's row stride is `ldy`. BF16 rows
    /// and INT4 groups go to the C kernels (`Kernels`, chosen by CPU features): bit-identical to `reference` at the
    /// portable and AVX2 levels, within ckernels.h's bound of the exact product at AVX2 + FMA. Each row's result
    /// does not depend on `rows` (nor on the thread that asks).
    static func rows(_ w: WeightMatrix, _ rows: Range<Int>, x: UnsafePointer<Float>, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int) {
        // ggml blocks have no Swift kernel: the C one at the active level.
        if case .rows(let decoder) = w.storage, let blocks = decoder.ggmlBlocks {
            return Kernels.ggmlRows(blocks, rows: rows, cols: w.cols, x: x, m: m, y: y, ldy: ldy)
        }
        if Kernels.swiftReference { return reference(w, rows, x: x, m: m, y: y, ldy: ldy) }
        switch w.storage {
        case .plain(let view) where view.dtype == .bf16:
            Kernels.bf16Rows(w: view.bytes.baseAddress!, rows: rows, cols: w.cols, x: x, m: m, y: y, ldy: ldy)
        case let .packed(codes, scales, group, _, _, _):
            Kernels.int4Rows(
                words: codes.bytes.baseAddress!, scales: scales.bytes.baseAddress!, rows: rows, cols: w.cols, group: group,
                x: x, m: m, y: y, ldy: ldy)
        default:
            reference(w, rows, x: x, m: m, y: y, ldy: ldy)
        }
    }

    /// The same products in Swift: F32 rows here, and the BF16 / INT4 kernels the C ones replaced (tests hold
    /// them equal to the portable and AVX2 levels).
    static func reference(_ w: WeightMatrix, _ rows: Range<Int>, x: UnsafePointer<Float>, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int) {
        let cols = w.cols
        switch w.storage {
        case .plain(let view) where view.dtype == .bf16:
            let base = view.bytes.baseAddress!
            dot(rows, m: m, cols: cols, x: x, y: y, ldy: ldy) { r, c in
                let bits = SIMD8<UInt32>(truncatingIfNeeded: base.loadUnaligned(fromByteOffset: 2 * (r * cols + c), as: SIMD8<UInt16>.self)) &<< 16
                return unsafeBitCast(bits, to: SIMD8<Float>.self)
            }
        case .plain(let view):
            let base = view.bytes.baseAddress!
            dot(rows, m: m, cols: cols, x: x, y: y, ldy: ldy) { r, c in base.loadUnaligned(fromByteOffset: 4 * (r * cols + c), as: SIMD8<Float>.self) }
        case let .packed(codes, scales, group, _, _, _):
            // Per group of `group` columns: s · Σ (nibble − 8) · x, eight nibbles (one word) at a time.
            let words = codes.bytes.baseAddress!, scaleBase = scales.bytes.baseAddress!
            let wordsPerRow = cols / 8, groups = cols / group, wordsPerGroup = group / 8
            let shifts = SIMD8<UInt32>(0, 4, 8, 12, 16, 20, 24, 28)
            let eight = SIMD8<Float>(repeating: 8)
            for r in rows {
                let rowWords = words + 4 * r * wordsPerRow
                let rowScales = scaleBase + 2 * r * groups
                for t in 0..<m {
                    let xt = UnsafeRawPointer(x + t * cols)
                    var total = SIMD8<Float>()
                    for g in 0..<groups {
                        var acc = SIMD8<Float>()
                        for k in 0..<wordsPerGroup {
                            let i = g * wordsPerGroup + k
                            let word = UInt32(littleEndian: rowWords.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                            let nibbles = (SIMD8<UInt32>(repeating: word) &>> shifts) & 0xF
                            acc.addProduct(SIMD8<Float>(nibbles) - eight, xt.loadUnaligned(fromByteOffset: 32 * i, as: SIMD8<Float>.self))
                        }
                        let s = BFloat16Bits.toFloat(UInt16(littleEndian: rowScales.loadUnaligned(fromByteOffset: 2 * g, as: UInt16.self)))
                        total.addProduct(acc, SIMD8<Float>(repeating: s))
                    }
                    y[t * ldy + r] = total.sum()
                }
            }
        case .fp8Block, .rows:
            preconditionFailure("FusedKernels.reference: no fused kernel for this storage (check supports first)")
        }
    }
}

extension FusedKernels {
    /// `y[t, r] = Σ_c x[t, c] · W[r, c]` over plain rows, eight columns at a time; `load(r, c)` gives
    /// `W[r, c..<c+8]` as floats.
    @inline(__always)
    static func dot(
        _ rows: Range<Int>, m: Int, cols: Int, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>, ldy: Int,
        load: (Int, Int) -> SIMD8<Float>
    ) {
        for r in rows {
            for t in 0..<m {
                let xt = UnsafeRawPointer(x + t * cols)
                var acc = SIMD8<Float>()
                var c = 0
                while c < cols {
                    acc.addProduct(load(r, c), xt.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self))
                    c += 8
                }
                y[t * ldy + r] = acc.sum()
            }
        }
    }
}

extension SIMD8 where Scalar == Float {
    /// `self += a · b` as a multiply and an add (a fused multiply-add would be a libm call per lane on the
    /// baseline x86-64 target).
    @inline(__always)
    mutating func addProduct(_ a: SIMD8<Float>, _ b: SIMD8<Float>) { self += a * b }
}
