#ifndef K2PACK_INT4_GEMM_H
#define K2PACK_INT4_GEMM_H

#include <stddef.h>

/// Prefill products with INT4 weights (many tokens through a routed expert): the weights are decoded a panel at a
/// time (16 KiB of float32, kept in the L1 cache) straight into the layout the product's inner loop reads, and
/// multiplied there, instead of being decoded into a row-major block that a BLAS then copies into its own layout.
/// `level` as in ckernels.h.
///
/// Results. Every output is one chain of fused multiply-adds over the columns in order,
///     acc = 0; for c in 0 ..< cols: acc = fma(x[t, c], W[r, c], acc)
/// with W[r, c] = (code − 8) · scale exactly as ck_int4_dequant_rows decodes it (one rounding). The AVX-512 path
/// (panels of 32 rows × 128 columns, codes decoded by a table lookup, tiles of up to 14 tokens × 32 rows), the
/// AVX2 + FMA path (16 rows × 256 columns, 6 × 16 tiles) and the portable path (C's fmaf) give the same bits, which
/// depend neither on `row_begin`/`row_end` (how the rows are split between threads) nor on `m` (which tokens share
/// a call). The lower vector levels have no variant of their own and run the portable path (slow: the forward pass
/// multiplies through a BLAS there).

/// Floats of the workspace ck_int4_gemm needs for `cols` columns.
size_t ck_int4_gemm_workspace(size_t cols);

/// `y[t * ldy + r] = Σ_c x[t * cols + c] · W[r, c]` (the chain above) for r in [row_begin, row_end), t in [0, m);
/// W laid out as for ck_int4_matvec (ckernels.h): cols % group == 0, group % 8 == 0. `work` holds
/// ck_int4_gemm_workspace(cols) floats.
void ck_int4_gemm(int level, const void *words, const void *scales, size_t row_begin, size_t row_end, size_t cols,
                  size_t group, const float *x, size_t m, float *y, size_t ldy, float *work);

#endif
