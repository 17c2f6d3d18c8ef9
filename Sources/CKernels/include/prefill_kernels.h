#ifndef K2PACK_PREFILL_KERNELS_H
#define K2PACK_PREFILL_KERNELS_H

#include <stddef.h>

/// The prefill attention's softmax (many tokens at once), with a portable C path and an AVX2 variant (per-function
/// target attribute, chosen at run time; `level` as in ckernels.h). Both compute the same float operations in the
/// same order (separate multiply and add, the same exponential polynomial, eight-lane sums then the lanes in
/// order), so results are bit-identical whichever runs.

/// One row of attention scores in place: the first `valid` (≥ 1) become `exp(s − max) / Σ exp(s − max)` over them,
/// the rest of the `count` become 0 (the causal mask). The exponential is a degree-6 polynomial after a split by
/// ln 2 (Cephes' expf), within 2 ulp of the correctly rounded value for arguments in [−87, 0]; arguments below −87
/// are taken as −87 (e^−87 ≈ 1.6e-38: nothing next to the row's largest term, which is 1).
void ck_softmax_row(int level, float *row, size_t valid, size_t count);

/// `e^x` for x ≤ 0 by the same polynomial (tests compare it with the C library's expf).
float ck_exp_nonpositive(float x);

#endif
