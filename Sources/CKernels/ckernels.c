#include "ckernels.h"

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

// MARK: - Dispatch

int ck_best_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) return CK_LEVEL_AVX2;
#endif
    return CK_LEVEL_PORTABLE;
}

#if defined(__x86_64__)
static int usable(int level) {
    static int best = -1;  // benign race: every thread computes the same value
    int b = __atomic_load_n(&best, __ATOMIC_RELAXED);
    if (b < 0) {
        b = ck_best_level();
        __atomic_store_n(&best, b, __ATOMIC_RELAXED);
    }
    return level < b ? level : b;
}
#endif

void ck_int4_matvec(int level, const void *words, const void *scales, size_t row_begin, size_t row_end, size_t cols,
                    size_t group, const float *x, size_t m, float *y, size_t ldy) {
#if defined(__x86_64__)
    if (usable(level) >= CK_LEVEL_AVX2) {
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
    if (usable(level) >= CK_LEVEL_AVX2) {
        bf16_matvec_avx2(w, row_begin, row_end, cols, x, m, y, ldy);
        return;
    }
#endif
    (void)level;
    bf16_matvec_portable(w, row_begin, row_end, cols, x, m, y, ldy);
}

void ck_bf16_to_f32(int level, const void *src, float *dst, size_t count) {
#if defined(__x86_64__)
    if (usable(level) >= CK_LEVEL_AVX2) {
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
    if (usable(level) >= CK_LEVEL_AVX2) {
        int4_dequant_rows_avx2(words, scales, row_begin, row_end, cols, group, out);
        return;
    }
#endif
    (void)level;
    int4_dequant_rows_portable(words, scales, row_begin, row_end, cols, group, out);
}
