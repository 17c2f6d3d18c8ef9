#include "int4_gemm.h"
#include "ckernels.h"

// The only multiply-adds fused are the explicit ones (fmaf, _mm256_fmadd_ps): the decoding stays one rounding.
#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#include <math.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// Blocking: KC columns per panel, 16 weight rows per panel (two 8-lane vectors), up to 6 tokens per inner
// product (6 × 2 accumulators), MC tokens' packed activations per pass (MC · KC floats, 192 KiB: the L2 cache).
#define IG_KC 256
#define IG_NR 16
#define IG_MR 6
#define IG_MC 192

static inline uint32_t ig_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline float ig_bf16(const unsigned char *p) {
    uint32_t bits = ((uint32_t)p[0] | (uint32_t)p[1] << 8) << 16;
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}

size_t ck_int4_gemm_workspace(size_t cols) { return cols > (size_t)IG_MC * IG_KC ? cols : (size_t)IG_MC * IG_KC; }

// MARK: - Portable

static void int4_gemm_portable(const unsigned char *words, const unsigned char *scales, size_t row_begin, size_t row_end,
                               size_t cols, size_t group, const float *x, size_t m, float *y, size_t ldy, float *row) {
    const size_t words_per_row = cols / 8, groups = cols / group;
    for (size_t r = row_begin; r < row_end; r++) {
        const unsigned char *rw = words + 4 * r * words_per_row, *rs = scales + 2 * r * groups;
        for (size_t i = 0; i < words_per_row; i++) {
            const uint32_t word = ig_u32(rw + 4 * i);
            const float s = ig_bf16(rs + 2 * (8 * i / group));
            for (int j = 0; j < 8; j++) row[8 * i + j] = ((float)((word >> (4 * j)) & 0xF) - 8.0f) * s;
        }
        for (size_t t = 0; t < m; t++) {
            const float *xt = x + t * cols;
            float acc = 0.0f;
            for (size_t c = 0; c < cols; c++) acc = fmaf(xt[c], row[c], acc);
            y[t * ldy + r] = acc;
        }
    }
}

// MARK: - x86-64 AVX2 + FMA

#if defined(__x86_64__)
#define IG_FMA __attribute__((target("avx2,fma")))
#define IG_INLINE __attribute__((always_inline)) static inline

/* Tokens [t, t + mr) of x, columns [k0, k0 + kc), into dst column by column (the run's tokens of a column side by
   side), as both tiles read a run of tokens. */
IG_INLINE void ig_pack_run(const float *x, size_t cols, size_t t, size_t mr, size_t k0, size_t kc, float *dst) {
    for (size_t i = 0; i < mr; i++) {
        const float *src = x + (t + i) * cols + k0;
        for (size_t k = 0; k < kc; k++) dst[k * mr + i] = src[k];
    }
}

/* Asks for the codes of rows [next, next + nr) (below row_end), columns [k0, k0 + kc): the next panel's, fetched
   while this one multiplies. */
IG_INLINE void ig_prefetch_panel(const unsigned char *words, size_t next, size_t nr, size_t row_end,
                                 size_t words_per_row, size_t k0, size_t kc) {
    for (size_t j = 0; j < nr && next + j < row_end; j++) {
        const char *p = (const char *)(words + 4 * ((next + j) * words_per_row + k0 / 8));
        for (size_t b = 0; b < kc / 2; b += 64) _mm_prefetch(p + b, _MM_HINT_T0);
    }
}

IG_FMA IG_INLINE void ig_transpose8(__m256 v[8]) {
    const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
    const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
    const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
    const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

// Rows [n0, n0 + nr) (nr ≤ 16), columns [k0, k0 + kc) decoded into `wp` as kc × 16 floats: column k's 16 rows at
// wp[16k ..< 16k + 16], rows past nr zero. Eight rows at a time: eight words of each row (64 columns) loaded and
// transposed, so that one vector holds one word of the eight rows; each of its eight nibbles, shifted down, gives
// one column's eight codes: (code − 8) as floats times the eight rows' scales of the word's group (the same values,
// one rounding each, as ck_int4_dequant_rows).
IG_FMA static void ig_decode_panel(const unsigned char *words, const unsigned char *scales, size_t n0, size_t nr,
                                   size_t k0, size_t kc, size_t words_per_row, size_t groups, size_t group, float *wp) {
    const __m256i low = _mm256_set1_epi32(0xF);
    const __m256 eight = _mm256_set1_ps(8.0f);
    for (size_t half = 0; half < IG_NR; half += 8) {
        const size_t live = nr > half ? (nr - half < 8 ? nr - half : 8) : 0;
        if (live == 0) {
            for (size_t k = 0; k < kc; k++) _mm256_store_ps(wp + IG_NR * k + half, _mm256_setzero_ps());
            continue;
        }
        const unsigned char *rw[8];
        for (size_t j = 0; j < 8; j++) rw[j] = words + 4 * ((n0 + half + (j < live ? j : 0)) * words_per_row);
        float sc[8];
        size_t group_of = (size_t)-1;
        __m256 s = _mm256_setzero_ps();
        for (size_t i0 = 0; i0 < kc / 8; i0 += 8) {
            const size_t count = kc / 8 - i0 < 8 ? kc / 8 - i0 : 8;
            __m256 v[8];
            for (size_t j = 0; j < 8; j++) {
                if (j >= live) {
                    v[j] = _mm256_setzero_ps();
                } else if (count == 8) {
                    v[j] = _mm256_loadu_ps((const float *)(rw[j] + 4 * (k0 / 8 + i0)));
                } else {
                    uint32_t part[8] = {0};
                    for (size_t w = 0; w < count; w++) part[w] = ig_u32(rw[j] + 4 * (k0 / 8 + i0 + w));
                    v[j] = _mm256_loadu_ps((const float *)part);
                }
            }
            ig_transpose8(v);
            for (size_t w = 0; w < count; w++) {
                const size_t g = 8 * (k0 / 8 + i0 + w) / group;
                if (g != group_of) {
                    for (size_t j = 0; j < 8; j++) sc[j] = j < live ? ig_bf16(scales + 2 * ((n0 + half + j) * groups + g)) : 0.0f;
                    s = _mm256_loadu_ps(sc);
                    group_of = g;
                }
                const __m256i codes = _mm256_castps_si256(v[w]);
                float *dst = wp + IG_NR * 8 * (i0 + w) + half;
                for (int c = 0; c < 8; c++) {
                    const __m256i n = _mm256_and_si256(_mm256_srli_epi32(codes, 4 * c), low);
                    _mm256_store_ps(dst + IG_NR * c, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(n), eight), s));
                }
            }
        }
    }
}

// c[i * ldc + j] (i < MR tokens, j < 16 rows) = chain over k < kc of fma(xp[k·MR + i], wp[16k + j], ·), starting
// from 0 (`first`) or from c.
#define IG_KERNEL(MR)                                                                                                 \
    IG_FMA static void ig_kernel##MR(size_t kc, const float *xp, const float *wp, float *c, size_t ldc, int first) { \
        __m256 lo[MR], hi[MR];                                                                                       \
        for (int i = 0; i < MR; i++) {                                                                               \
            lo[i] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + i * ldc);                                       \
            hi[i] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(c + i * ldc + 8);                                   \
        }                                                                                                            \
        for (size_t k = 0; k < kc; k++) {                                                                            \
            const __m256 b0 = _mm256_load_ps(wp + IG_NR * k), b1 = _mm256_load_ps(wp + IG_NR * k + 8);                \
            for (int i = 0; i < MR; i++) {                                                                           \
                const __m256 a = _mm256_broadcast_ss(xp + MR * k + i);                                               \
                lo[i] = _mm256_fmadd_ps(a, b0, lo[i]);                                                               \
                hi[i] = _mm256_fmadd_ps(a, b1, hi[i]);                                                               \
            }                                                                                                        \
        }                                                                                                            \
        for (int i = 0; i < MR; i++) {                                                                               \
            _mm256_storeu_ps(c + i * ldc, lo[i]);                                                                    \
            _mm256_storeu_ps(c + i * ldc + 8, hi[i]);                                                                \
        }                                                                                                            \
    }
IG_KERNEL(1)
IG_KERNEL(2)
IG_KERNEL(3)
IG_KERNEL(4)
IG_KERNEL(5)
IG_KERNEL(6)

IG_FMA static void ig_kernel(size_t mr, size_t kc, const float *xp, const float *wp, float *c, size_t ldc, int first) {
    switch (mr) {
    case 1: ig_kernel1(kc, xp, wp, c, ldc, first); break;
    case 2: ig_kernel2(kc, xp, wp, c, ldc, first); break;
    case 3: ig_kernel3(kc, xp, wp, c, ldc, first); break;
    case 4: ig_kernel4(kc, xp, wp, c, ldc, first); break;
    case 5: ig_kernel5(kc, xp, wp, c, ldc, first); break;
    default: ig_kernel6(kc, xp, wp, c, ldc, first); break;
    }
}

IG_FMA static void int4_gemm_fma(const unsigned char *words, const unsigned char *scales, size_t row_begin, size_t row_end,
                                 size_t cols, size_t group, const float *x, size_t m, float *y, size_t ldy, float *xp) {
    const size_t words_per_row = cols / 8, groups = cols / group;
    float wp[IG_KC * IG_NR] __attribute__((aligned(32)));
    float tile[IG_MR * IG_NR] __attribute__((aligned(32)));
    for (size_t t0 = 0; t0 < m; t0 += IG_MC) {
        const size_t mc = m - t0 < IG_MC ? m - t0 : IG_MC;
        for (size_t k0 = 0; k0 < cols; k0 += IG_KC) {
            const size_t kc = cols - k0 < IG_KC ? cols - k0 : IG_KC;
            const int first = k0 == 0;
            // The activations of tokens [t0, t0 + mc), columns [k0, k0 + kc): in runs of up to six tokens, each run
            // column by column (the run's tokens of a column side by side).
            for (size_t p = 0; p < mc; p += IG_MR) {
                const size_t mr = mc - p < IG_MR ? mc - p : IG_MR;
                ig_pack_run(x, cols, t0 + p, mr, k0, kc, xp + p * kc);
            }
            for (size_t n0 = row_begin; n0 < row_end; n0 += IG_NR) {
                const size_t nr = row_end - n0 < IG_NR ? row_end - n0 : IG_NR;
                ig_decode_panel(words, scales, n0, nr, k0, kc, words_per_row, groups, group, wp);
                ig_prefetch_panel(words, n0 + IG_NR, IG_NR, row_end, words_per_row, k0, kc);
                for (size_t p = 0; p < mc; p += IG_MR) {
                    const size_t mr = mc - p < IG_MR ? mc - p : IG_MR;
                    float *c = y + (t0 + p) * ldy + n0;
                    if (nr == IG_NR) {
                        ig_kernel(mr, kc, xp + p * kc, wp, c, ldy, first);
                        continue;
                    }
                    // A last panel of fewer than 16 rows: through a tile, so nothing past row_end is touched.
                    for (size_t i = 0; i < mr; i++)
                        for (size_t j = 0; j < IG_NR; j++) tile[i * IG_NR + j] = (!first && j < nr) ? c[i * ldy + j] : 0.0f;
                    ig_kernel(mr, kc, xp + p * kc, wp, tile, IG_NR, first);
                    for (size_t i = 0; i < mr; i++)
                        for (size_t j = 0; j < nr; j++) c[i * ldy + j] = tile[i * IG_NR + j];
                }
            }
        }
    }
}

// MARK: - x86-64 AVX-512

// Panels of 32 rows (two 16-lane vectors) × 128 columns (16 KiB), tiles of up to 14 tokens × 32 rows (28
// accumulators of the 32 zmm registers). A pass's tokens are cut into runs of nearly equal length (85 tokens: seven
// runs of 12–13, not six of 14 and one of 1). The arithmetic is the FMA path's: per output one fused chain over
// the columns in order, the weights decoded exactly, so the bits are the portable path's.
#define IG5_KC 128
#define IG5_NR 32
#define IG5_MR 14
#define IG5_MC (IG_MC * IG_KC / IG5_KC)
_Static_assert(IG5_KC <= 128 && IG5_KC % 8 == 0, "a panel's columns are at most one load of 16 words per row");
_Static_assert(IG5_MC * IG5_KC <= IG_MC * IG_KC, "the AVX-512 pass's activations fit ck_int4_gemm_workspace");
#define IG5_FN __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
// The tile's accumulators must stay in registers: its loops over tokens unrolled whole.
#if defined(__clang__)
#define IG5_UNROLL _Pragma("clang loop unroll(full)")
#else
#define IG5_UNROLL _Pragma("GCC unroll 16")
#endif

// v[j] (lane w = word w of row j) → v[w] (lane j = word w of row j): a 16 × 16 transpose of 32-bit lanes.
IG5_FN IG_INLINE void ig5_transpose16(__m512i v[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
    }
    // t[2a], t[2a + 1]: rows 2a, 2a + 1 interleaved, words {0, 1 | 4, 5 | 8, 9 | 12, 13} and {2, 3 | 6, 7 | …}.
    for (int i = 0; i < 16; i += 4) {
        v[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        v[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        v[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        v[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    // v[4b + q]: rows 4b … 4b + 3 of word q in each 128-bit lane L (word 4L + q).
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(v[i], v[4 + i], 0x88);       // lanes 0, 2 of rows 0–3, then of rows 4–7
        t[4 + i] = _mm512_shuffle_i32x4(v[i], v[4 + i], 0xDD);   // lanes 1, 3
        t[8 + i] = _mm512_shuffle_i32x4(v[8 + i], v[12 + i], 0x88);
        t[12 + i] = _mm512_shuffle_i32x4(v[8 + i], v[12 + i], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        v[i] = _mm512_shuffle_i32x4(t[i], t[8 + i], 0x88);        // 128-bit lane 0: word q
        v[8 + i] = _mm512_shuffle_i32x4(t[i], t[8 + i], 0xDD);    // lane 2: word 8 + q
        v[4 + i] = _mm512_shuffle_i32x4(t[4 + i], t[12 + i], 0x88);  // lane 1: word 4 + q
        v[12 + i] = _mm512_shuffle_i32x4(t[4 + i], t[12 + i], 0xDD); // lane 3: word 12 + q
    }
}

// Rows [n0, n0 + nr) (nr ≤ 32), columns [k0, k0 + kc) (kc ≤ 128, a multiple of 8) decoded into `wp` as kc × 32
// floats: column k's 32 rows at wp[32k ..< 32k + 32], rows past nr zero. Sixteen rows at a time: sixteen words of
// each row (128 columns) loaded and transposed, so that one vector holds one word of the sixteen rows; each of its
// eight nibbles, shifted down, indexes a table of the sixteen values n − 8 (vpermps reads the low four bits, no
// mask), times the rows' scales of the word's group: (code − 8) · scale, one rounding, as ck_int4_dequant_rows.
IG5_FN static void ig5_decode_panel(const unsigned char *words, const unsigned char *scales, size_t n0, size_t nr,
                                    size_t k0, size_t kc, size_t words_per_row, size_t groups, size_t group, float *wp) {
    const __m512 minus8 = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    const size_t count = kc / 8, g0 = k0 / group, ng = (k0 + kc - 1) / group - g0 + 1;
    const __mmask16 load = (__mmask16)(count >= 16 ? 0xFFFF : (1u << count) - 1);
    for (size_t half = 0; half < IG5_NR; half += 16) {
        const size_t live = nr > half ? (nr - half < 16 ? nr - half : 16) : 0;
        if (live == 0) {
            for (size_t k = 0; k < kc; k++) _mm512_store_ps(wp + IG5_NR * k + half, _mm512_setzero_ps());
            continue;
        }
        // The rows' scales, one vector per group the columns touch (at most 16: group ≥ 8). An even number of
        // groups (Kimi's group 32: four per 128 columns) is gathered two at a time, the 32 bits at a pair's first
        // scale holding both (the low half the first), all inside the row; live rows only.
        float sc[16][16] __attribute__((aligned(64)));
        const unsigned char *rs = scales + 2 * ((n0 + half) * groups + g0);
        if (ng % 2 == 0 && groups <= ((size_t)1 << 26)) {  // the byte offsets below fit 32 bits
            const __mmask16 rows = (__mmask16)(live >= 16 ? 0xFFFF : (1u << live) - 1);
            const __m512i at = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                                  _mm512_set1_epi32((int)(2 * groups)));
            const __m512i high = _mm512_set1_epi32((int)0xFFFF0000u);
            for (size_t g = 0; g < ng; g += 2) {
                const __m512i pair = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), rows, at, rs + 2 * g, 1);
                _mm512_store_ps(sc[g], _mm512_castsi512_ps(_mm512_slli_epi32(pair, 16)));
                _mm512_store_ps(sc[g + 1], _mm512_castsi512_ps(_mm512_and_si512(pair, high)));
            }
        } else {
            for (size_t j = 0; j < 16; j++)
                for (size_t g = 0; g < ng; g++) sc[g][j] = j < live ? ig_bf16(rs + 2 * (j * groups + g)) : 0.0f;
        }
        __m512i v[16];
        for (size_t j = 0; j < 16; j++)
            v[j] = j < live ? _mm512_maskz_loadu_epi32(load, words + 4 * ((n0 + half + j) * words_per_row + k0 / 8))
                            : _mm512_setzero_si512();
        ig5_transpose16(v);
        for (size_t w = 0; w < count; w++) {
            const __m512 s = _mm512_load_ps(sc[(8 * w + k0 % group) / group]);
            float *dst = wp + IG5_NR * 8 * w + half;
            for (int c = 0; c < 8; c++) {
                const __m512 n = _mm512_permutexvar_ps(_mm512_srli_epi32(v[w], 4 * c), minus8);
                _mm512_store_ps(dst + IG5_NR * c, _mm512_mul_ps(n, s));
            }
        }
    }
}

// c[i * ldc + j] (i < MR tokens, j < 32 rows, lanes outside `lo`/`hi` neither read nor written) = chain over
// k < kc of fma(xp[k·MR + i], wp[32k + j], ·), starting from 0 (`first`) or from c.
#define IG5_KERNEL(MR)                                                                                               \
    IG5_FN static void ig5_kernel##MR(size_t kc, const float *xp, const float *wp, float *c, size_t ldc, int first,  \
                                      __mmask16 mlo, __mmask16 mhi) {                                                \
        __m512 lo[MR], hi[MR];                                                                                       \
        IG5_UNROLL for (int i = 0; i < MR; i++) {                                                                    \
            lo[i] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mlo, c + i * ldc);                           \
            hi[i] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(mhi, c + i * ldc + 16);                      \
        }                                                                                                            \
        for (size_t k = 0; k < kc; k++) {                                                                            \
            const __m512 b0 = _mm512_load_ps(wp + IG5_NR * k), b1 = _mm512_load_ps(wp + IG5_NR * k + 16);            \
            IG5_UNROLL for (int i = 0; i < MR; i++) {                                                                \
                const __m512 a = _mm512_set1_ps(xp[MR * k + i]);                                                     \
                lo[i] = _mm512_fmadd_ps(a, b0, lo[i]);                                                               \
                hi[i] = _mm512_fmadd_ps(a, b1, hi[i]);                                                               \
            }                                                                                                        \
        }                                                                                                            \
        IG5_UNROLL for (int i = 0; i < MR; i++) {                                                                    \
            _mm512_mask_storeu_ps(c + i * ldc, mlo, lo[i]);                                                          \
            _mm512_mask_storeu_ps(c + i * ldc + 16, mhi, hi[i]);                                                     \
        }                                                                                                            \
    }
IG5_KERNEL(1)
IG5_KERNEL(2)
IG5_KERNEL(3)
IG5_KERNEL(4)
IG5_KERNEL(5)
IG5_KERNEL(6)
IG5_KERNEL(7)
IG5_KERNEL(8)
IG5_KERNEL(9)
IG5_KERNEL(10)
IG5_KERNEL(11)
IG5_KERNEL(12)
IG5_KERNEL(13)
IG5_KERNEL(14)

IG5_FN static void ig5_kernel(size_t mr, size_t kc, const float *xp, const float *wp, float *c, size_t ldc, int first,
                              __mmask16 mlo, __mmask16 mhi) {
    switch (mr) {
    case 1: ig5_kernel1(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 2: ig5_kernel2(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 3: ig5_kernel3(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 4: ig5_kernel4(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 5: ig5_kernel5(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 6: ig5_kernel6(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 7: ig5_kernel7(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 8: ig5_kernel8(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 9: ig5_kernel9(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 10: ig5_kernel10(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 11: ig5_kernel11(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 12: ig5_kernel12(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    case 13: ig5_kernel13(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    default: ig5_kernel14(kc, xp, wp, c, ldc, first, mlo, mhi); break;
    }
}

// The length of run `i` of `runs` nearly equal runs over `mc` tokens, and where it starts.
static inline size_t ig5_run_length(size_t mc, size_t runs, size_t i) { return mc / runs + (i < mc % runs); }
static inline size_t ig5_run_start(size_t mc, size_t runs, size_t i) { return i * (mc / runs) + (i < mc % runs ? i : mc % runs); }

IG5_FN static void int4_gemm_avx512(const unsigned char *words, const unsigned char *scales, size_t row_begin,
                                    size_t row_end, size_t cols, size_t group, const float *x, size_t m, float *y,
                                    size_t ldy, float *xp) {
    const size_t words_per_row = cols / 8, groups = cols / group;
    float wp[IG5_KC * IG5_NR] __attribute__((aligned(64)));
    for (size_t t0 = 0; t0 < m; t0 += IG5_MC) {
        const size_t mc = m - t0 < IG5_MC ? m - t0 : IG5_MC;
        const size_t runs = (mc + IG5_MR - 1) / IG5_MR;
        for (size_t k0 = 0; k0 < cols; k0 += IG5_KC) {
            const size_t kc = cols - k0 < IG5_KC ? cols - k0 : IG5_KC;
            const int first = k0 == 0;
            // The activations of tokens [t0, t0 + mc), columns [k0, k0 + kc), run by run, each run column by column.
            for (size_t q = 0; q < runs; q++) {
                const size_t p = ig5_run_start(mc, runs, q), mr = ig5_run_length(mc, runs, q);
                ig_pack_run(x, cols, t0 + p, mr, k0, kc, xp + p * kc);
            }
            for (size_t n0 = row_begin; n0 < row_end; n0 += IG5_NR) {
                const size_t nr = row_end - n0 < IG5_NR ? row_end - n0 : IG5_NR;
                ig5_decode_panel(words, scales, n0, nr, k0, kc, words_per_row, groups, group, wp);
                ig_prefetch_panel(words, n0 + IG5_NR, IG5_NR, row_end, words_per_row, k0, kc);
                const __mmask16 mlo = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
                const __mmask16 mhi = (__mmask16)(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
                for (size_t q = 0; q < runs; q++) {
                    const size_t p = ig5_run_start(mc, runs, q), mr = ig5_run_length(mc, runs, q);
                    ig5_kernel(mr, kc, xp + p * kc, wp, y + (t0 + p) * ldy + n0, ldy, first, mlo, mhi);
                }
            }
        }
    }
}
#endif

void ck_int4_gemm(int level, const void *words, const void *scales, size_t row_begin, size_t row_end, size_t cols,
                  size_t group, const float *x, size_t m, float *y, size_t ldy, float *work) {
    if (row_begin >= row_end || m == 0) return;
#if defined(__x86_64__)
    const int usable = ck_usable_level(level);
    if (usable >= CK_LEVEL_AVX512) {
        int4_gemm_avx512(words, scales, row_begin, row_end, cols, group, x, m, y, ldy, work);
        return;
    }
    if (usable >= CK_LEVEL_AVX2FMA) {
        int4_gemm_fma(words, scales, row_begin, row_end, cols, group, x, m, y, ldy, work);
        return;
    }
#endif
    (void)level;
    int4_gemm_portable(words, scales, row_begin, row_end, cols, group, x, m, y, ldy, work);
}
