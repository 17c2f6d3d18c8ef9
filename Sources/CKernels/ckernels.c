#include "ckernels.h"

#include <stdlib.h>
#if defined(__GLIBC__)
#include <limits.h>
#include <malloc.h>
#endif

// Results must not depend on the variant: no contraction of a multiply and an add into one rounding.
#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// MARK: - Unaligned little-endian loads

static inline uint32_t load_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline float bf16_at(const unsigned char *p) {
    uint32_t bits = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}

static inline float sum8(const float lanes[8]) {
    float s = -0.0f;
    for (int j = 0; j < 8; j++) s += lanes[j];
    return s;
}

// MARK: - Portable paths

static void int4_matvec_portable(const unsigned char *words, const unsigned char *scales, size_t row_begin,
                                 size_t row_end, size_t cols, size_t group, const float *x, size_t m, float *y,
                                 size_t ldy) {
    const size_t words_per_row = cols / 8, groups = cols / group, words_per_group = group / 8;
    for (size_t r = row_begin; r < row_end; r++) {
        const unsigned char *row = words + 4 * r * words_per_row;
        const unsigned char *row_scales = scales + 2 * r * groups;
        for (size_t t = 0; t < m; t++) {
            const float *xt = x + t * cols;
            float total[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (size_t g = 0; g < groups; g++) {
                float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                for (size_t k = 0; k < words_per_group; k++) {
                    const size_t i = g * words_per_group + k;
                    const uint32_t word = load_u32(row + 4 * i);
                    for (int j = 0; j < 8; j++) {
                        const float q = (float)((word >> (4 * j)) & 0xF) - 8.0f;
                        const float p = q * xt[8 * i + j];
                        acc[j] = acc[j] + p;
                    }
                }
                const float s = bf16_at(row_scales + 2 * g);
                for (int j = 0; j < 8; j++) {
                    const float p = acc[j] * s;
                    total[j] = total[j] + p;
                }
            }
            y[t * ldy + r] = sum8(total);
        }
    }
}

static void bf16_matvec_portable(const unsigned char *w, size_t row_begin, size_t row_end, size_t cols,
                                 const float *x, size_t m, float *y, size_t ldy) {
    for (size_t r = row_begin; r < row_end; r++) {
        const unsigned char *row = w + 2 * r * cols;
        for (size_t t = 0; t < m; t++) {
            const float *xt = x + t * cols;
            float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (size_t c = 0; c < cols; c += 8) {
                for (int j = 0; j < 8; j++) {
                    const float p = bf16_at(row + 2 * (c + j)) * xt[c + j];
                    acc[j] = acc[j] + p;
                }
            }
            y[t * ldy + r] = sum8(acc);
        }
    }
}

static void bf16_to_f32_portable(const unsigned char *src, float *dst, size_t count) {
    for (size_t i = 0; i < count; i++) dst[i] = bf16_at(src + 2 * i);
}

static void int4_dequant_rows_portable(const unsigned char *words, const unsigned char *scales, size_t row_begin,
                                       size_t row_end, size_t cols, size_t group, float *out) {
    const size_t words_per_row = cols / 8, groups = cols / group;
    for (size_t r = row_begin; r < row_end; r++) {
        const unsigned char *row = words + 4 * r * words_per_row;
        const unsigned char *row_scales = scales + 2 * r * groups;
        float *dst = out + (r - row_begin) * cols;
        for (size_t i = 0; i < words_per_row; i++) {
            const uint32_t word = load_u32(row + 4 * i);
            const float s = bf16_at(row_scales + 2 * (8 * i / group));
            for (int j = 0; j < 8; j++) dst[8 * i + j] = ((float)((word >> (4 * j)) & 0xF) - 8.0f) * s;
        }
    }
}

// MARK: - x86-64 AVX2

#if defined(__x86_64__)
#define CK_AVX2 __attribute__((target("avx2")))

CK_AVX2 static inline __m256 nibbles_minus_8(uint32_t word) {
    const __m256i n = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)word), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                       _mm256_set1_epi32(0xF));
    return _mm256_sub_ps(_mm256_cvtepi32_ps(n), _mm256_set1_ps(8.0f));
}

CK_AVX2 static inline __m256 bf16x8(const unsigned char *p) {
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

CK_AVX2 static inline float hsum8(__m256 v) {
    float lanes[8];
    _mm256_storeu_ps(lanes, v);
    return sum8(lanes);
}

// NR rows at once (independent sums, so the adds' latency overlaps); each row's sums are the portable path's.
#define CK_INT4_ROWS(NR)                                                                                           \
    CK_AVX2 static void int4_rows##NR##_avx2(const unsigned char *words, const unsigned char *scales, size_t r,       \
                                             size_t cols, size_t group, const float *xt, float *yt) {              \
        const size_t words_per_row = cols / 8, groups = cols / group, words_per_group = group / 8;                 \
        __m256 total[NR];                                                                                          \
        for (int k = 0; k < NR; k++) total[k] = _mm256_setzero_ps();                                               \
        for (size_t g = 0; g < groups; g++) {                                                                      \
            __m256 acc[NR];                                                                                        \
            for (int k = 0; k < NR; k++) acc[k] = _mm256_setzero_ps();                                             \
            for (size_t w = 0; w < words_per_group; w++) {                                                         \
                const size_t i = g * words_per_group + w;                                                          \
                const __m256 xv = _mm256_loadu_ps(xt + 8 * i);                                                     \
                for (int k = 0; k < NR; k++) {                                                                     \
                    const __m256 q = nibbles_minus_8(load_u32(words + 4 * ((r + k) * words_per_row + i)));         \
                    acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(q, xv));                                          \
                }                                                                                                  \
            }                                                                                                      \
            for (int k = 0; k < NR; k++) {                                                                         \
                const __m256 s = _mm256_set1_ps(bf16_at(scales + 2 * ((r + k) * groups + g)));                     \
                total[k] = _mm256_add_ps(total[k], _mm256_mul_ps(acc[k], s));                                      \
            }                                                                                                      \
        }                                                                                                          \
        for (int k = 0; k < NR; k++) yt[r + k] = hsum8(total[k]);                                                  \
    }
CK_INT4_ROWS(4)
CK_INT4_ROWS(1)

CK_AVX2 static void int4_matvec_avx2(const unsigned char *words, const unsigned char *scales, size_t row_begin,
                                     size_t row_end, size_t cols, size_t group, const float *x, size_t m, float *y,
                                     size_t ldy) {
    for (size_t t = 0; t < m; t++) {
        size_t r = row_begin;
        for (; r + 4 <= row_end; r += 4) int4_rows4_avx2(words, scales, r, cols, group, x + t * cols, y + t * ldy);
        for (; r < row_end; r++) int4_rows1_avx2(words, scales, r, cols, group, x + t * cols, y + t * ldy);
    }
}

#define CK_BF16_ROWS(NR)                                                                                           \
    CK_AVX2 static void bf16_rows##NR##_avx2(const unsigned char *w, size_t r, size_t cols, const float *xt,       \
                                             float *yt) {                                                          \
        __m256 acc[NR];                                                                                            \
        for (int k = 0; k < NR; k++) acc[k] = _mm256_setzero_ps();                                                 \
        for (size_t c = 0; c < cols; c += 8) {                                                                     \
            const __m256 xv = _mm256_loadu_ps(xt + c);                                                             \
            for (int k = 0; k < NR; k++)                                                                           \
                acc[k] = _mm256_add_ps(acc[k], _mm256_mul_ps(bf16x8(w + 2 * ((r + k) * cols + c)), xv));           \
        }                                                                                                          \
        for (int k = 0; k < NR; k++) yt[r + k] = hsum8(acc[k]);                                                    \
    }
CK_BF16_ROWS(4)
CK_BF16_ROWS(1)

CK_AVX2 static void bf16_matvec_avx2(const unsigned char *w, size_t row_begin, size_t row_end, size_t cols,
                                     const float *x, size_t m, float *y, size_t ldy) {
    for (size_t t = 0; t < m; t++) {
        size_t r = row_begin;
        for (; r + 4 <= row_end; r += 4) bf16_rows4_avx2(w, r, cols, x + t * cols, y + t * ldy);
        for (; r < row_end; r++) bf16_rows1_avx2(w, r, cols, x + t * cols, y + t * ldy);
    }
}

CK_AVX2 static void bf16_to_f32_avx2(const unsigned char *src, float *dst, size_t count) {
    size_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, bf16x8(src + 2 * i));
    for (; i < count; i++) dst[i] = bf16_at(src + 2 * i);
}

CK_AVX2 static void int4_dequant_rows_avx2(const unsigned char *words, const unsigned char *scales, size_t row_begin,
                                           size_t row_end, size_t cols, size_t group, float *out) {
    const size_t words_per_row = cols / 8, groups = cols / group;
    for (size_t r = row_begin; r < row_end; r++) {
        const unsigned char *row = words + 4 * r * words_per_row;
        const unsigned char *row_scales = scales + 2 * r * groups;
        float *dst = out + (r - row_begin) * cols;
        for (size_t i = 0; i < words_per_row; i++) {
            const __m256 s = _mm256_set1_ps(bf16_at(row_scales + 2 * (8 * i / group)));
            _mm256_storeu_ps(dst + 8 * i, _mm256_mul_ps(nibbles_minus_8(load_u32(row + 4 * i)), s));
        }
    }
}
#endif

// MARK: - x86-64 AVX2 + FMA
//
// Not bit-identical to the levels above: multiplies and adds are fused, the lanes run over a different column
// order and are summed as a tree. Within the bound of ckernels.h (CKernelTests.fmaBound). Two tricks:
//  - x is rearranged once per call: in each whole block of 16 columns, the eight even columns, then the eight odd
//    ones. A 32-byte load of 16 BF16 values then gives the even columns' floats by a shift (low halves) and the
//    odd ones' by a mask (high halves); an 8-byte load of 16 INT4 codes widened to 32-bit lanes holds, in lane
//    k, the codes of columns 2k (low nibble) and 2k + 1 (high nibble).
//  - int → float by a magic exponent: the bits 0x4B000000 | n are the float 2²³ + n, so (2²³ + n) − (2²³ + 8)
//    is n − 8 exactly (the low nibble masked, the high one shifted down, each or-ed with the exponent).
// INT4: per row, token and group, one fused chain over the group's even and odd columns, then one fused
// multiply-add of the group's sum by its scale into eight running lanes. BF16: per row and token, two fused chains
// (even and odd columns), added at the end. Lanes are summed as a tree.

#if defined(__x86_64__)
#define CK_FMA __attribute__((target("avx2,fma,f16c")))
#define CK_INLINE __attribute__((always_inline)) static inline

/// Largest rearranged activations kept on the stack (floats); more go to the heap.
#define CK_FMA_STACK_X 8192

/// `x` (m rows of `cols`) with each whole block of 16 columns rearranged as even columns then odd ones; a tail
/// of 8 columns stays in place.
static void deinterleave16(const float *x, size_t cols, size_t m, float *out) {
    for (size_t t = 0; t < m; t++) {
        const float *xt = x + t * cols;
        float *ot = out + t * cols;
        size_t c = 0;
        for (; c + 16 <= cols; c += 16) {
            for (int j = 0; j < 8; j++) {
                ot[c + j] = xt[c + 2 * j];
                ot[c + 8 + j] = xt[c + 2 * j + 1];
            }
        }
        for (; c < cols; c++) ot[c] = xt[c];
    }
}

CK_FMA CK_INLINE float hsum8_fma(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Rows r ..< r + NR for tokens t0 ..< t0 + NT of the INT4 product (x rearranged, `xp`); NR · NT ≤ 4, group a
/// multiple of 16. The weights of a row are unpacked once for all NT tokens.
CK_FMA CK_INLINE void int4_tile_fma(const unsigned char *words, const unsigned char *scales, size_t r, size_t cols,
                                    size_t group, const float *xp, size_t t0, float *y, size_t ldy, const int NR,
                                    const int NT) {
    const size_t row_bytes = cols / 2, groups = cols / group, blocks = group / 16;
    const __m256i magic = _mm256_set1_epi32(0x4B000000), low = _mm256_set1_epi32(0xF);
    const __m256 offset = _mm256_set1_ps(8388616.0f);  // 2²³ + 8
    __m256 total[4][4];
    float s[4][8];
    for (int k = 0; k < NR; k++)
        for (int t = 0; t < NT; t++) total[k][t] = _mm256_setzero_ps();
    for (size_t g = 0; g < groups; g++) {
        if (g % 8 == 0) {
            for (int k = 0; k < NR; k++) {
                const unsigned char *rs = scales + 2 * ((r + k) * groups + g);
                if (g + 8 <= groups) {
                    _mm256_storeu_ps(s[k], _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)rs)), 16)));
                } else {
                    for (size_t j = 0; j < groups - g; j++) s[k][j] = bf16_at(rs + 2 * j);
                }
            }
        }
        __m256 acc[4][4];
        for (int k = 0; k < NR; k++)
            for (int t = 0; t < NT; t++) acc[k][t] = _mm256_setzero_ps();
        for (size_t b = 0; b < blocks; b++) {
            const size_t c = (g * blocks + b) * 16;
            for (int k = 0; k < NR; k++) {
                const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(words + (r + k) * row_bytes + c / 2)));
                const __m256 lo = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(v, low), magic)), offset);
                const __m256 hi = _mm256_sub_ps(_mm256_castsi256_ps(_mm256_or_si256(_mm256_srli_epi32(v, 4), magic)), offset);
                for (int t = 0; t < NT; t++) {
                    const float *xt = xp + (t0 + t) * cols + c;
                    acc[k][t] = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xt), acc[k][t]);
                    acc[k][t] = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xt + 8), acc[k][t]);
                }
            }
        }
        for (int k = 0; k < NR; k++) {
            const __m256 sg = _mm256_broadcast_ss(&s[k][g % 8]);
            for (int t = 0; t < NT; t++) total[k][t] = _mm256_fmadd_ps(acc[k][t], sg, total[k][t]);
        }
    }
    for (int k = 0; k < NR; k++)
        for (int t = 0; t < NT; t++) y[(t0 + t) * ldy + r + k] = hsum8_fma(total[k][t]);
}

/// The same with groups of 32 (Kimi K2's INT4), so that a group's two blocks of 16 are unrolled.
CK_FMA CK_INLINE void int4_tile_fma32(const unsigned char *words, const unsigned char *scales, size_t r, size_t cols,
                                      size_t group, const float *xp, size_t t0, float *y, size_t ldy, const int NR,
                                      const int NT) {
    (void)group;
    int4_tile_fma(words, scales, r, cols, 32, xp, t0, y, ldy, NR, NT);
}

/// Rows r ..< r + NR for tokens t0 ..< t0 + NT of the BF16 product (x rearranged, `xp`); NR · NT ≤ 4.
CK_FMA CK_INLINE void bf16_tile_fma(const unsigned char *w, size_t r, size_t cols, const float *xp, size_t t0,
                                    float *y, size_t ldy, const int NR, const int NT) {
    const __m256i hi_mask = _mm256_set1_epi32((int)0xFFFF0000u);
    __m256 even[4][4], odd[4][4];
    for (int k = 0; k < NR; k++)
        for (int t = 0; t < NT; t++) even[k][t] = odd[k][t] = _mm256_setzero_ps();
    size_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        for (int k = 0; k < NR; k++) {
            const __m256i v = _mm256_loadu_si256((const __m256i *)(w + 2 * ((r + k) * cols + c)));
            const __m256 e = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
            const __m256 o = _mm256_castsi256_ps(_mm256_and_si256(v, hi_mask));
            for (int t = 0; t < NT; t++) {
                const float *xt = xp + (t0 + t) * cols + c;
                even[k][t] = _mm256_fmadd_ps(e, _mm256_loadu_ps(xt), even[k][t]);
                odd[k][t] = _mm256_fmadd_ps(o, _mm256_loadu_ps(xt + 8), odd[k][t]);
            }
        }
    }
    if (c < cols) {  // a last block of 8 columns, in place
        for (int k = 0; k < NR; k++) {
            const __m256 e = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(w + 2 * ((r + k) * cols + c)))), 16));
            for (int t = 0; t < NT; t++) even[k][t] = _mm256_fmadd_ps(e, _mm256_loadu_ps(xp + (t0 + t) * cols + c), even[k][t]);
        }
    }
    for (int k = 0; k < NR; k++)
        for (int t = 0; t < NT; t++) y[(t0 + t) * ldy + r + k] = hsum8_fma(_mm256_add_ps(even[k][t], odd[k][t]));
}

// Tiles for each token count: one token takes four rows at a time, two tokens two rows, three or four one row;
// rows left over go one at a time. A row's result does not depend on the tile it is computed in.
#define CK_TILES(KERNEL, ARGS_BEFORE, ARGS_AFTER)                                                                  \
    for (size_t t0 = 0; t0 < m; t0 += 4) {                                                                         \
        const size_t nt = m - t0 < 4 ? m - t0 : 4;                                                                 \
        size_t r = row_begin;                                                                                      \
        switch (nt) {                                                                                              \
        case 1:                                                                                                    \
            for (; r + 4 <= row_end; r += 4) KERNEL(ARGS_BEFORE, r, ARGS_AFTER, 4, 1);                           \
            for (; r < row_end; r++) KERNEL(ARGS_BEFORE, r, ARGS_AFTER, 1, 1);                                   \
            break;                                                                                                 \
        case 2:                                                                                                    \
            for (; r + 2 <= row_end; r += 2) KERNEL(ARGS_BEFORE, r, ARGS_AFTER, 2, 2);                           \
            for (; r < row_end; r++) KERNEL(ARGS_BEFORE, r, ARGS_AFTER, 1, 2);                                   \
            break;                                                                                                 \
        case 3:                                                                                                    \
            for (; r < row_end; r++) KERNEL(ARGS_BEFORE, r, ARGS_AFTER, 1, 3);                                   \
            break;                                                                                                 \
        default:                                                                                                   \
            for (; r < row_end; r++) KERNEL(ARGS_BEFORE, r, ARGS_AFTER, 1, 4);                                   \
            break;                                                                                                 \
        }                                                                                                          \
    }

#define CK_COMMA ,

/// The INT4 product at the FMA level; returns 0 when it could not run (group not a multiple of 16, or no memory
/// for the rearranged activations), and the caller takes the AVX2 path.
CK_FMA static int int4_matvec_fma(const unsigned char *words, const unsigned char *scales, size_t row_begin,
                                  size_t row_end, size_t cols, size_t group, const float *x, size_t m, float *y,
                                  size_t ldy) {
    if (group % 16 != 0) return 0;
    float stack[CK_FMA_STACK_X];
    float *xp = m * cols <= CK_FMA_STACK_X ? stack : malloc(m * cols * sizeof(float));
    if (xp == NULL) return 0;
    deinterleave16(x, cols, m, xp);
    if (group == 32) {
        CK_TILES(int4_tile_fma32, words CK_COMMA scales, cols CK_COMMA group CK_COMMA xp CK_COMMA t0 CK_COMMA y CK_COMMA ldy)
    } else {
        CK_TILES(int4_tile_fma, words CK_COMMA scales, cols CK_COMMA group CK_COMMA xp CK_COMMA t0 CK_COMMA y CK_COMMA ldy)
    }
    if (xp != stack) free(xp);
    return 1;
}

/// The BF16 product at the FMA level; returns 0 when there was no memory for the rearranged activations.
CK_FMA static int bf16_matvec_fma(const unsigned char *w, size_t row_begin, size_t row_end, size_t cols,
                                  const float *x, size_t m, float *y, size_t ldy) {
    float stack[CK_FMA_STACK_X];
    float *xp = m * cols <= CK_FMA_STACK_X ? stack : malloc(m * cols * sizeof(float));
    if (xp == NULL) return 0;
    deinterleave16(x, cols, m, xp);
    CK_TILES(bf16_tile_fma, w, cols CK_COMMA xp CK_COMMA t0 CK_COMMA y CK_COMMA ldy)
    if (xp != stack) free(xp);
    return 1;
}
#endif

// MARK: - x86-64 AVX-512
//
// The FMA level's scheme on 16-lane vectors, for decoding's few-token products. Within the bound of ckernels.h,
// not bit-identical to the FMA level (other lane counts, another order).
//  - x is rearranged once per call in blocks of 32 columns (the 16 even columns, then the 16 odd ones; a tail of
//    fewer than 32 stays in place). A 16-byte load of 32 INT4 codes widened to 32-bit lanes holds, in lane k, the
//    codes of columns 2k (low nibble) and 2k + 1 (high nibble); a 64-byte load of 32 BF16 values gives the even
//    columns' floats by a shift and the odd ones' by a mask.
//  - INT4 codes become weights by a table lookup: vpermps takes the low four bits of each lane as an index into
//    sixteen floats, (n − 8) · scale for n = 0…15 (one table per row and group, exact: a 4-bit integer times a BF16
//    scale fits a float's significand), so the low nibble needs no mask and the high one a shift.
// Per row and token: two fused chains (even and odd columns; a BF16 tail of 8–24 columns into the even one, masked,
// 16 at a time), added, the sixteen lanes summed as a tree: at most cols / 32 + 7 roundings per term.
//  - Software prefetch (no effect on results): a tile's rows are one contiguous block of the weights (and of the INT4
//    scales), and so is the block of a tile a few tiles on. While a tile is multiplied, the block CK_PREFETCH_BYTES
//    or more ahead (whole tiles, at least one) is prefetched, spread evenly over the tile's iterations, as far as the
//    call's last row. The hardware prefetchers alone leave the INT4 kernel waiting on memory (a tile reads four
//    streams, and short rows, 1–4 KiB, end before a stream is learnt): in a C micro-benchmark (two threads splitting
//    the rows, 512 MB of weights, one token, best of 7) INT4 (group 32, rows of 7,168 and 2,048 columns) went from
//    11–14 to 19–21 G weights/s per core, near its 25 with the codes in L2, and BF16 from 17–35 to 32–47 GB/s (rows
//    of 512 columns gained most: 2.4×). Into L1 for INT4 codes; into L2 for BF16 (into L1 it was slower with long
//    rows) and INT4 scales. Distances of one to eight tiles measured alike.

#if defined(__x86_64__)
#define CK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c")))

/// `x` (m rows of `cols`) with each whole block of 32 columns rearranged as even columns then odd ones; a tail of
/// fewer than 32 columns stays in place.
static void deinterleave32(const float *x, size_t cols, size_t m, float *out) {
    for (size_t t = 0; t < m; t++) {
        const float *xt = x + t * cols;
        float *ot = out + t * cols;
        size_t c = 0;
        for (; c + 32 <= cols; c += 32) {
            for (int j = 0; j < 16; j++) {
                ot[c + j] = xt[c + 2 * j];
                ot[c + 16 + j] = xt[c + 2 * j + 1];
            }
        }
        for (; c < cols; c++) ot[c] = xt[c];
    }
}

/// How far ahead of the tile being multiplied its rows' weights are prefetched, at least (bytes).
#define CK_PREFETCH_BYTES 8192

/// The block to prefetch while multiplying rows r ..< r + NR (`row_bytes` each, contiguous from `base`): whole tiles
/// of NR rows, at least CK_PREFETCH_BYTES on, if they end by `row_end`; NULL (nothing) past it.
CK_INLINE const unsigned char *prefetch_block(const unsigned char *base, size_t r, size_t row_end, size_t row_bytes,
                                              const int NR) {
    const size_t tile = (size_t)NR * row_bytes, ahead = tile >= CK_PREFETCH_BYTES ? 1 : (CK_PREFETCH_BYTES + tile - 1) / tile;
    const size_t next = r + (size_t)NR * ahead;
    return next + (size_t)NR <= row_end ? base + next * row_bytes : NULL;
}

/// Prefetches the cache lines that start in [begin, end) bytes of `block` (`block` NULL: none). `hint` 0: into L1,
/// 1: into L2.
#define CK_PREFETCH_RANGE(block, begin, end, hint)                                                                  \
    do {                                                                                                           \
        if ((block) != NULL)                                                                                       \
            for (size_t o_ = ((begin) + 63) & ~(size_t)63; o_ < (end); o_ += 64)                                   \
                _mm_prefetch((const char *)(block) + o_, (hint) == 0 ? _MM_HINT_T0 : _MM_HINT_T1);                \
    } while (0)

CK_AVX512 CK_INLINE float hsum16_avx512(__m512 v) {
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/// Rows r ..< r + NR for tokens t0 ..< t0 + NT of the INT4 product (x rearranged by deinterleave32, `xp`);
/// NR · NT ≤ 4, group a multiple of 32. A row's weights are decoded once for all NT tokens. Prefetches rows ahead, up
/// to `row_end` (codes into L1, scales into L2).
CK_AVX512 CK_INLINE void int4_tile_avx512(const unsigned char *words, const unsigned char *scales, size_t r,
                                          size_t cols, size_t group, const float *xp, size_t t0, float *y, size_t ldy,
                                          size_t row_end, const int NR, const int NT) {
    const size_t groups = cols / group, blocks = group / 32;
    const unsigned char *next_words = prefetch_block(words, r, row_end, cols / 2, NR);
    const unsigned char *next_scales = next_words == NULL ? NULL : scales + (next_words - words) / (cols / 2) * 2 * groups;
    const __m512 codes = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const unsigned char *wk[4], *sk[4];
    const float *xt[4];
    __m512 even[4][4], odd[4][4];
    for (int k = 0; k < NR; k++) {
        wk[k] = words + (r + k) * (cols / 2);
        sk[k] = scales + 2 * (r + k) * groups;
    }
    for (int t = 0; t < NT; t++) xt[t] = xp + (t0 + t) * cols;
    for (int k = 0; k < NR; k++)
        for (int t = 0; t < NT; t++) even[k][t] = odd[k][t] = _mm512_setzero_ps();
    for (size_t g0 = 0; g0 < groups; g0 += 16) {  // sixteen groups' scales at a time
        const size_t n = groups - g0 < 16 ? groups - g0 : 16;
        float s[4][16];
        CK_PREFETCH_RANGE(next_scales, (size_t)NR * 2 * g0, (size_t)NR * 2 * (g0 + n), 1);
        for (int k = 0; k < NR; k++) {
            if (n == 16) {
                const __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(sk[k] + 2 * g0)));
                _mm512_storeu_ps(s[k], _mm512_castsi512_ps(_mm512_slli_epi32(h, 16)));
            } else {
                for (size_t j = 0; j < n; j++) s[k][j] = bf16_at(sk[k] + 2 * (g0 + j));
            }
        }
        for (size_t j = 0; j < n; j++) {
            CK_PREFETCH_RANGE(next_words, (size_t)NR * (g0 + j) * (group / 2), (size_t)NR * (g0 + j + 1) * (group / 2), 0);
            for (int k = 0; k < NR; k++) {
                const __m512 table = _mm512_mul_ps(codes, _mm512_set1_ps(s[k][j]));
                for (size_t b = 0; b < blocks; b++) {
                    const size_t c = ((g0 + j) * blocks + b) * 32;
                    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(wk[k] + c / 2)));
                    const __m512 lo = _mm512_permutexvar_ps(v, table);
                    const __m512 hi = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
                    for (int t = 0; t < NT; t++) {
                        even[k][t] = _mm512_fmadd_ps(lo, _mm512_loadu_ps(xt[t] + c), even[k][t]);
                        odd[k][t] = _mm512_fmadd_ps(hi, _mm512_loadu_ps(xt[t] + c + 16), odd[k][t]);
                    }
                }
            }
        }
    }
    for (int k = 0; k < NR; k++)
        for (int t = 0; t < NT; t++) y[(t0 + t) * ldy + r + k] = hsum16_avx512(_mm512_add_ps(even[k][t], odd[k][t]));
}

/// The same with groups of 32 (Kimi K2's INT4): one block per group, the loop over blocks folded away.
CK_AVX512 CK_INLINE void int4_tile_avx512_32(const unsigned char *words, const unsigned char *scales, size_t r,
                                             size_t cols, size_t group, const float *xp, size_t t0, float *y,
                                             size_t ldy, size_t row_end, const int NR, const int NT) {
    (void)group;
    int4_tile_avx512(words, scales, r, cols, 32, xp, t0, y, ldy, row_end, NR, NT);
}

/// Rows r ..< r + NR for tokens t0 ..< t0 + NT of the BF16 product (x rearranged by deinterleave32, `xp`);
/// NR · NT ≤ 4. Prefetches rows ahead, up to `row_end`, into L2.
CK_AVX512 CK_INLINE void bf16_tile_avx512(const unsigned char *w, size_t r, size_t cols, const float *xp, size_t t0,
                                          float *y, size_t ldy, size_t row_end, const int NR, const int NT) {
    const __m512i hi_mask = _mm512_set1_epi32((int)0xFFFF0000u);
    const unsigned char *next = prefetch_block(w, r, row_end, 2 * cols, NR);
    __m512 even[4][4], odd[4][4];
    for (int k = 0; k < NR; k++)
        for (int t = 0; t < NT; t++) even[k][t] = odd[k][t] = _mm512_setzero_ps();
    size_t c = 0;
    for (; c + 32 <= cols; c += 32) {
        CK_PREFETCH_RANGE(next, (size_t)NR * 2 * c, (size_t)NR * 2 * (c + 32 <= cols - 32 ? c + 32 : cols), 1);
        for (int k = 0; k < NR; k++) {
            const __m512i v = _mm512_loadu_si512((const void *)(w + 2 * ((r + k) * cols + c)));
            const __m512 e = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
            const __m512 o = _mm512_castsi512_ps(_mm512_and_si512(v, hi_mask));
            for (int t = 0; t < NT; t++) {
                const float *xt = xp + (t0 + t) * cols + c;
                even[k][t] = _mm512_fmadd_ps(e, _mm512_loadu_ps(xt), even[k][t]);
                odd[k][t] = _mm512_fmadd_ps(o, _mm512_loadu_ps(xt + 16), odd[k][t]);
            }
        }
    }
    for (; c < cols; c += 16) {  // a last 8, 16 or 24 columns, in place, 16 at a time by masked loads (masked-off lanes read nothing)
        const __mmask16 mask = cols - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (cols - c)) - 1);
        for (int k = 0; k < NR; k++) {
            const __m256i h = _mm256_maskz_loadu_epi16(mask, (const void *)(w + 2 * ((r + k) * cols + c)));
            const __m512 e = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
            for (int t = 0; t < NT; t++)
                even[k][t] = _mm512_fmadd_ps(e, _mm512_maskz_loadu_ps(mask, xp + (t0 + t) * cols + c), even[k][t]);
        }
    }
    for (int k = 0; k < NR; k++)
        for (int t = 0; t < NT; t++) y[(t0 + t) * ldy + r + k] = hsum16_avx512(_mm512_add_ps(even[k][t], odd[k][t]));
}

/// The INT4 product at the AVX-512 level; returns 0 when it could not run (group not a multiple of 32, or no
/// memory for the rearranged activations), and the caller takes the FMA path.
CK_AVX512 static int int4_matvec_avx512(const unsigned char *words, const unsigned char *scales, size_t row_begin,
                                        size_t row_end, size_t cols, size_t group, const float *x, size_t m, float *y,
                                        size_t ldy) {
    if (group % 32 != 0) return 0;
    float stack[CK_FMA_STACK_X];
    float *xp = m * cols <= CK_FMA_STACK_X ? stack : malloc(m * cols * sizeof(float));
    if (xp == NULL) return 0;
    deinterleave32(x, cols, m, xp);
    if (group == 32) {
        CK_TILES(int4_tile_avx512_32, words CK_COMMA scales, cols CK_COMMA group CK_COMMA xp CK_COMMA t0 CK_COMMA y CK_COMMA ldy CK_COMMA row_end)
    } else {
        CK_TILES(int4_tile_avx512, words CK_COMMA scales, cols CK_COMMA group CK_COMMA xp CK_COMMA t0 CK_COMMA y CK_COMMA ldy CK_COMMA row_end)
    }
    if (xp != stack) free(xp);
    return 1;
}

/// The BF16 product at the AVX-512 level; returns 0 when there was no memory for the rearranged activations.
CK_AVX512 static int bf16_matvec_avx512(const unsigned char *w, size_t row_begin, size_t row_end, size_t cols,
                                        const float *x, size_t m, float *y, size_t ldy) {
    float stack[CK_FMA_STACK_X];
    float *xp = m * cols <= CK_FMA_STACK_X ? stack : malloc(m * cols * sizeof(float));
    if (xp == NULL) return 0;
    deinterleave32(x, cols, m, xp);
    CK_TILES(bf16_tile_avx512, w, cols CK_COMMA xp CK_COMMA t0 CK_COMMA y CK_COMMA ldy CK_COMMA row_end)
    if (xp != stack) free(xp);
    return 1;
}
#endif

// MARK: - Dispatch

int ck_best_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) {
        if (__builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
            if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
                return CK_LEVEL_AVX512;
            return CK_LEVEL_AVX2FMA;
        }
        return CK_LEVEL_AVX2;
    }
#endif
    return CK_LEVEL_PORTABLE;
}

int ck_usable_level(int level) {
    static int best = -1;  // benign race: every thread computes the same value
    int b = __atomic_load_n(&best, __ATOMIC_RELAXED);
    if (b < 0) {
        b = ck_best_level();
        __atomic_store_n(&best, b, __ATOMIC_RELAXED);
    }
    if (level < CK_LEVEL_PORTABLE) return CK_LEVEL_PORTABLE;
    return level < b ? level : b;
}

void ck_int4_matvec(int level, const void *words, const void *scales, size_t row_begin, size_t row_end, size_t cols,
                    size_t group, const float *x, size_t m, float *y, size_t ldy) {
#if defined(__x86_64__)
    const int usable = ck_usable_level(level);
    if (usable >= CK_LEVEL_AVX512 && int4_matvec_avx512(words, scales, row_begin, row_end, cols, group, x, m, y, ldy))
        return;
    if (usable >= CK_LEVEL_AVX2FMA && int4_matvec_fma(words, scales, row_begin, row_end, cols, group, x, m, y, ldy))
        return;
    if (usable >= CK_LEVEL_AVX2) {
        int4_matvec_avx2(words, scales, row_begin, row_end, cols, group, x, m, y, ldy);
        return;
    }
#endif
    (void)level;
    int4_matvec_portable(words, scales, row_begin, row_end, cols, group, x, m, y, ldy);
}

void ck_bf16_matvec(int level, const void *w, size_t row_begin, size_t row_end, size_t cols, const float *x, size_t m,
                    float *y, size_t ldy) {
#if defined(__x86_64__)
    const int usable = ck_usable_level(level);
    if (usable >= CK_LEVEL_AVX512 && bf16_matvec_avx512(w, row_begin, row_end, cols, x, m, y, ldy)) return;
    if (usable >= CK_LEVEL_AVX2FMA && bf16_matvec_fma(w, row_begin, row_end, cols, x, m, y, ldy)) return;
    if (usable >= CK_LEVEL_AVX2) {
        bf16_matvec_avx2(w, row_begin, row_end, cols, x, m, y, ldy);
        return;
    }
#endif
    (void)level;
    bf16_matvec_portable(w, row_begin, row_end, cols, x, m, y, ldy);
}

void ck_bf16_to_f32(int level, const void *src, float *dst, size_t count) {
#if defined(__x86_64__)
    if (ck_usable_level(level) >= CK_LEVEL_AVX2) {
        bf16_to_f32_avx2(src, dst, count);
        return;
    }
#endif
    (void)level;
    bf16_to_f32_portable(src, dst, count);
}

void ck_int4_dequant_rows(int level, const void *words, const void *scales, size_t row_begin, size_t row_end,
                          size_t cols, size_t group, float *out) {
#if defined(__x86_64__)
    if (ck_usable_level(level) >= CK_LEVEL_AVX2) {
        int4_dequant_rows_avx2(words, scales, row_begin, row_end, cols, group, out);
        return;
    }
#endif
    (void)level;
    int4_dequant_rows_portable(words, scales, row_begin, row_end, cols, group, out);
}

int ck_keep_freed_memory(void) {
#if defined(__GLIBC__)
    return mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, INT_MAX) == 1;
#else
    return 0;
#endif
}
