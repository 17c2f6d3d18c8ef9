#ifndef K2PACK_CKERNELS_H
#define K2PACK_CKERNELS_H

#include <stddef.h>
#include <stdint.h>

/// The forward pass's hot loops, each with a portable C path and x86-64 variants compiled with per-function
/// target attributes (no global -m flags), chosen at run time from the CPU's features. Weights are little-endian
/// stored bytes, read unaligned. A `level` above what the CPU supports is lowered to the best supported one
/// (`ck_usable_level`, which the ggml-block kernels of ggml_kernels.h share).
///
/// Results. CK_LEVEL_PORTABLE and CK_LEVEL_AVX2 compute the same float operations in the same order (separate
/// multiply and add, no fused multiply-add; the eight-lane sums of the Swift kernels they replaced, then a
/// left-to-right sum of the lanes), so they are bit-identical to each other and to those Swift kernels.
/// CK_LEVEL_AVX2FMA fuses multiplies and adds and sums in another order, so its last bits differ; every level,
/// against the exact product of the stored weights (INT4: (code − 8) · scale) with x, satisfies
///     |y − exact| ≤ γ(cols / 8 + 16) · Σ_c |W[r, c] · x[t, c]|,   γ(n) = n · 2⁻²⁴ / (1 − n · 2⁻²⁴)
/// barring overflow and underflow: the usual bound of a float32 sum whose every term goes through at most
/// cols / 8 + 16 roundings (portable: cols / 8 + 11 at most; the FMA level's are fewer: cols / 16 + 5 for BF16,
/// group / 8 + cols / group + 4 for INT4; the AVX-512 level's cols / 32 + 7 for both). The decoding functions (ck_bf16_to_f32, ck_int4_dequant_rows) are exact at every level.

/// Kernel levels. 0 is the portable C path; higher levels need the CPU features named.
enum {
    CK_LEVEL_PORTABLE = 0,
    /// x86-64 AVX2 (256-bit integer shifts by lane; the float work stays multiply-then-add, bit-identical to the
    /// portable path).
    CK_LEVEL_AVX2 = 1,
    /// x86-64 AVX2 + FMA + F16C: fused multiply-add, activations rearranged once per call so that weights unpack
    /// with a shift or a mask, several rows (one token) or tokens (one row) per pass over the weights. Within the
    /// bound above, not bit-identical. The ggml-block kernels' vector path runs at this level.
    CK_LEVEL_AVX2FMA = 2,
    /// x86-64 AVX-512 F + BW + VL (and the FMA level's features): the INT4 and BF16 products on 16-lane vectors,
    /// 32 columns per block, INT4 codes decoded by a table lookup (vpermps) with the group's scale folded in. Within
    /// the bound above, not bit-identical to the FMA level. The prefill INT4 product (int4_gemm.h) has a 16-lane
    /// tile of its own, with the same bits as every other level's. Everything else (conversions, ggml blocks, the
    /// rest of prefill) runs as at CK_LEVEL_AVX2FMA.
    CK_LEVEL_AVX512 = 3,
};

/// The highest level this CPU supports (CK_LEVEL_PORTABLE off x86-64).
int ck_best_level(void);

/// The level that runs when `level` is asked for: `level` lowered to ck_best_level() (probed once, cached),
/// and never below CK_LEVEL_PORTABLE.
int ck_usable_level(int level);

/// `y[t * ldy + r] = Σ_c x[t * cols + c] · W[r, c]` for r in [row_begin, row_end), t in [0, m), where W is
/// pack-quantized INT4: row r's code c is nibble c % 8 (lowest first) of little-endian word r·cols/8 + c/8,
/// stored as q + 8, with a BF16 scale per group of `group` columns (row r's scales start at r·cols/group).
/// Needs cols % group == 0 and group % 8 == 0. Portable and AVX2, per row and token: per group, eight lanes sum
/// (q − 8)·x over the group's words; the group's lanes times its scale are added to eight running lanes; those
/// are summed in order. AVX2FMA (group % 16 == 0; other groups take the AVX2 path): per group, one fused chain
/// over the group's columns (even and odd ones of each block of 16 in turn), scaled into eight running lanes by a
/// fused multiply-add; the lanes summed as a tree. AVX512 (group % 32 == 0; others take the AVX2FMA path): the
/// weights decoded exactly ((code − 8) · scale by a table lookup), two fused chains over the row (even and odd
/// columns of each block of 32), added, the sixteen lanes summed as a tree.
void ck_int4_matvec(int level, const void *words, const void *scales, size_t row_begin, size_t row_end, size_t cols,
                    size_t group, const float *x, size_t m, float *y, size_t ldy);

/// The same product for BF16 rows `w` (row r at element r·cols); cols % 8 == 0. Portable and AVX2: eight lanes
/// sum w·x over the row's blocks of eight columns; the lanes are summed in order. AVX2FMA: even and odd columns
/// of each block of 16 in two fused chains (a last block of 8 into the even one), added, summed as a tree.
/// AVX512: the same with blocks of 32 (a last 8–24 columns into the even chain), sixteen lanes.
void ck_bf16_matvec(int level, const void *w, size_t row_begin, size_t row_end, size_t cols, const float *x, size_t m,
                    float *y, size_t ldy);

/// `count` BF16 values from `src` (unaligned) to float32 (exact).
void ck_bf16_to_f32(int level, const void *src, float *dst, size_t count);

/// Rows [row_begin, row_end) of an INT4 matrix laid out as for ck_int4_matvec, dequantized exactly
/// (`(code − 8) · scale`, one rounding) into `out`, `cols` floats per row, row row_begin first.
void ck_int4_dequant_rows(int level, const void *words, const void *scales, size_t row_begin, size_t row_end,
                          size_t cols, size_t group, float *out);

/// Asks the CPU to start loading the cache line holding `address` (a hint: no effect on results, never faults).
/// Lets a batch of hash-table lookups overlap their cache misses.
static inline void ck_prefetch(const void *address) { __builtin_prefetch(address, 0, 1); }

/// Makes the C heap (glibc malloc) keep the memory that is freed for later allocations instead of returning it to
/// the system: no allocation is served by its own mmap, and free space at the heap's top is not given back below
/// 2 GiB. A process that allocates and frees the same large buffers again and again (a forward pass: every layer's
/// activations and products, tens to hundreds of MB each) then reuses pages it has already touched instead of
/// taking a page fault, and the kernel's zeroing of the page, for every 4 KiB of every new buffer. Returns 1 where
/// applied, 0 where the C library has no such settings.
int ck_keep_freed_memory(void);

#endif
