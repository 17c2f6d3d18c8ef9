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
