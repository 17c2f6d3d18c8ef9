#ifndef K2PACK_CKERNELS_H
#define K2PACK_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// The forward pass's hot loops, each with a portable C path and x86-64 variants compiled with per-function
/// target attributes (no global -m flags), chosen at run time from the CPU's features.
///
/// Every variant computes the same float operations in the same order as the portable path (separate multiply
/// and add, no fused multiply-add; the eight-lane sums of the Swift kernels they replace, then a left-to-right
/// sum of the lanes), so results are bit-identical whichever runs. Weights are little-endian stored bytes,
/// read unaligned. A `level` above what the CPU supports is lowered to the best supported one.

/// Kernel levels. 0 is the portable C path; higher levels need the CPU features named.
enum {
    CK_LEVEL_PORTABLE = 0,
    /// x86-64 AVX2 (256-bit integer shifts by lane; the float work stays multiply-then-add).
    CK_LEVEL_AVX2 = 1,
};

/// The highest level this CPU supports (CK_LEVEL_PORTABLE off x86-64).
int ck_best_level(void);

/// `y[t * ldy + r] = Σ_c x[t * cols + c] · W[r, c]` for r in [row_begin, row_end), t in [0, m), where W is
/// pack-quantized INT4: row r's code c is nibble c % 8 (lowest first) of little-endian word r·cols/8 + c/8,
/// stored as q + 8, with a BF16 scale per group of `group` columns (row r's scales start at r·cols/group).
/// Needs cols % group == 0 and group % 8 == 0. Per row and token: per group, eight lanes sum (q − 8)·x over the
/// group's words; the group's lanes times its scale are added to eight running lanes; those are summed in order.
void ck_int4_matvec(int level, const void *words, const void *scales, size_t row_begin, size_t row_end, size_t cols,
                    size_t group, const float *x, size_t m, float *y, size_t ldy);

/// The same product for BF16 rows `w` (row r at element r·cols); cols % 8 == 0. Eight lanes sum w·x over the row's
/// blocks of eight columns; the lanes are summed in order.
void ck_bf16_matvec(int level, const void *w, size_t row_begin, size_t row_end, size_t cols, const float *x, size_t m,
                    float *y, size_t ldy);

/// `count` BF16 values from `src` (unaligned) to float32 (exact).
void ck_bf16_to_f32(int level, const void *src, float *dst, size_t count);

/// Rows [row_begin, row_end) of an INT4 matrix laid out as for ck_int4_matvec, dequantized exactly
/// (`(code − 8) · scale`, one rounding) into `out`, `cols` floats per row, row row_begin first.
void ck_int4_dequant_rows(int level, const void *words, const void *scales, size_t row_begin, size_t row_end,
                          size_t cols, size_t group, float *out);

#endif
