import CKernels

extension Kernels {
    /// One row of attention scores in place: the first `valid` (≥ 1) softmaxed, the rest of the `count` zeroed
    /// (the causal mask); the C kernel (prefill_kernels.h), bit-identical at every level.
    static func softmaxRow(level: Level = active, _ row: UnsafeMutablePointer<Float>, valid: Int, count: Int) {
        precondition(valid >= 1 && valid <= count, "Kernels.softmaxRow: \(valid) valid of \(count)")
        ck_softmax_row(level.rawValue, row, valid, count)
    }

    /// `e^x` for `x ≤ 0` by the softmax kernel's polynomial (tests).
    static func expNonpositive(_ x: Float) -> Float { ck_exp_nonpositive(x) }
}

extension Kernels {
    /// Whether `int4Gemm` has a vector path at `level` (AVX2 + FMA); below it the pass multiplies INT4 weights by
    /// decoding row blocks for OpenBLAS instead (the C portable path is for tests).
    static func hasInt4Gemm(_ level: Level = active) -> Bool { usable(level) >= .avx2fma }

    /// Floats of workspace `int4Gemm` needs for `cols` columns.
    static func int4GemmWorkspace(cols: Int) -> Int { ck_int4_gemm_workspace(cols) }

    /// `y[t·ldy + r] = Σ_c x[t·cols + c] · W[r, c]` for `rows` and tokens `0..<m`, W INT4 pack-quantized as for
    /// `int4Rows`, decoded a panel at a time inside the product (int4_gemm.h): each output one fused multiply-add
    /// chain over the columns in order, the same bits at every level, for any row split and any `m`.
    static func int4Gemm(
        level: Level = active, words: UnsafeRawPointer, scales: UnsafeRawPointer, rows: Range<Int>, cols: Int, group: Int,
        x: UnsafePointer<Float>, m: Int, y: UnsafeMutablePointer<Float>, ldy: Int, work: UnsafeMutablePointer<Float>
    ) {
        precondition(group > 0 && group % 8 == 0 && cols % group == 0, "Kernels.int4Gemm: whole words and whole groups")
        ck_int4_gemm(level.rawValue, words, scales, rows.lowerBound, rows.upperBound, cols, group, x, m, y, ldy, work)
    }
}
