#include "ggml_kernels.h"
#include "ckernels.h"

#include <stdlib.h>

// The portable path keeps each multiply and add separately rounded; the AVX2 path uses FMA on purpose (see the
// header: these kernels promise dequantize-then-dot up to summation order and contraction, not equal bits).
#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// MARK: - Block layouts (ggml-common.h)

enum {
    Q4_0_BLOCK = 32, Q4_0_BYTES = 18,   // f16 d, qs[16]: element j low nibble of qs[j], j + 16 its high nibble
    Q8_0_BLOCK = 32, Q8_0_BYTES = 34,   // f16 d, int8 qs[32]
    Q2_K_BLOCK = 256, Q2_K_BYTES = 84,  // scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16 dmin
};

/// Sub-block sums of the activations that fit on the stack (Q2_K, 16 columns each); more go to the heap.
#define CK_Q2K_STACK_SUMS 4096

static inline uint16_t load_u16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }

/// IEEE half to float, exactly (subnormals normalized; NaN payloads kept), as GGUFDequantizer.halfToFloat.
static inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = h & 0x7C00, mantissa = h & 0x03FF;
    uint32_t bits;
    if (exponent == 0x7C00) {
        bits = sign | 0x7F800000u | mantissa << 13;
    } else if (exponent != 0) {
        bits = sign | ((uint32_t)(h & 0x7FFF) + 0x1C000u) << 13;
    } else if (mantissa == 0) {
        bits = sign;
    } else {
        uint32_t m = mantissa << 1, e = 0;
        while ((m & 0x0400) == 0) {
            m <<= 1;
            e++;
        }
        bits = sign | (127 - 15 - e) << 23 | (m & 0x03FF) << 13;
    }
    float f;
    __builtin_memcpy(&f, &bits, sizeof f);
    return f;
}

size_t ck_ggml_row_bytes(int type, size_t cols) {
    switch (type) {
    case CK_GGML_Q4_0: return cols % Q4_0_BLOCK == 0 ? cols / Q4_0_BLOCK * Q4_0_BYTES : 0;
    case CK_GGML_Q8_0: return cols % Q8_0_BLOCK == 0 ? cols / Q8_0_BLOCK * Q8_0_BYTES : 0;
    case CK_GGML_Q2_K: return cols % Q2_K_BLOCK == 0 ? cols / Q2_K_BLOCK * Q2_K_BYTES : 0;
    default: return 0;
    }
}

/// `sums[s] = Σ x[16 s ..< 16 s + 16]` (Q2_K's minimums multiply these).
static void sums16(const float *x, size_t cols, float *sums) {
    for (size_t s = 0; s < cols / 16; s++) {
        float a = 0;
        for (int l = 0; l < 16; l++) a += x[16 * s + l];
        sums[s] = a;
    }
}

// MARK: - Portable rows
//
// Eight running lanes (lane j takes columns ≡ j mod 8 of each block), so a compiler can keep them in vector
// registers without reassociating anything; the lanes are summed in order at the end of the row.

static inline float sum_lanes(const float lanes[8]) {
    float s = 0;
    for (int j = 0; j < 8; j++) s += lanes[j];
    return s;
}

static float q4_0_row_portable(const unsigned char *row, size_t blocks, const float *x) {
    float total[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t b = 0; b < blocks; b++) {
        const unsigned char *blk = row + Q4_0_BYTES * b;
        const unsigned char *qs = blk + 2;
        const float *xb = x + Q4_0_BLOCK * b;
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int k = 0; k < 16; k += 8)
            for (int j = 0; j < 8; j++) s[j] += (float)((int)(qs[k + j] & 0xF) - 8) * xb[k + j];
        for (int k = 0; k < 16; k += 8)
            for (int j = 0; j < 8; j++) s[j] += (float)((int)(qs[k + j] >> 4) - 8) * xb[16 + k + j];
        const float d = half_to_float(load_u16(blk));
        for (int j = 0; j < 8; j++) total[j] += d * s[j];
    }
    return sum_lanes(total);
}

static float q8_0_row_portable(const unsigned char *row, size_t blocks, const float *x) {
    float total[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t b = 0; b < blocks; b++) {
        const unsigned char *blk = row + Q8_0_BYTES * b;
        const float *xb = x + Q8_0_BLOCK * b;
        float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int k = 0; k < 32; k += 8)
            for (int j = 0; j < 8; j++) s[j] += (float)(int8_t)blk[2 + k + j] * xb[k + j];
        const float d = half_to_float(load_u16(blk));
        for (int j = 0; j < 8; j++) total[j] += d * s[j];
    }
    return sum_lanes(total);
}

/// Per sub-block s of 16: w = dl·q − ml with dl = d·(scale & 15), ml = dmin·(scale >> 4), so
/// Σ w·x = dl·Σ q·x − ml·Σ x; the second sums come from `sums`.
static float q2_k_row_portable(const unsigned char *row, size_t blocks, const float *x, const float *sums) {
    float total[8] = {0, 0, 0, 0, 0, 0, 0, 0}, mins = 0;
    for (size_t b = 0; b < blocks; b++) {
        const unsigned char *blk = row + Q2_K_BYTES * b;
        const unsigned char *scales = blk, *qs = blk + 16;
        const float d = half_to_float(load_u16(blk + 80)), dmin = half_to_float(load_u16(blk + 82));
        const float *xb = x + Q2_K_BLOCK * b;
        for (int half = 0; half < 2; half++) {
            for (int shift = 0; shift < 4; shift++) {
                const int base = 128 * half + 32 * shift;
                for (int part = 0; part < 2; part++) {
                    const int s = base / 16 + part;
                    float a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                    for (int k = 16 * part; k < 16 * part + 16; k += 8)
                        for (int j = 0; j < 8; j++)
                            a[j] += (float)((qs[32 * half + k + j] >> (2 * shift)) & 3) * xb[base + k + j];
                    const float dl = d * (float)(scales[s] & 0xF);
                    for (int j = 0; j < 8; j++) total[j] += dl * a[j];
                    mins += dmin * (float)(scales[s] >> 4) * sums[16 * b + (size_t)s];
                }
            }
        }
    }
    return sum_lanes(total) - mins;
}

// MARK: - x86-64 AVX2 + FMA + F16C

#if defined(__x86_64__)
#define CK_GGML_AVX2 __attribute__((target("avx2,fma,f16c")))

CK_GGML_AVX2 static inline float hsum(__m256 v) {
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)));
}

/// Bytes 0–7 and 8–15 of `v` as two vectors of eight floats (signed or unsigned bytes).
#define CK_I8_LO(v) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))
#define CK_I8_HI(v) _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)))
#define CK_U8_LO(v) _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))
#define CK_U8_HI(v) _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)))

/// The 32 weights' codes of a Q4_0 block times x, summed in eight lanes (not yet scaled by d).
CK_GGML_AVX2 static inline __m256 q4_0_block_avx2(const unsigned char *blk, const float *xb) {
    const __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 2));
    const __m128i mask = _mm_set1_epi8(0xF), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(qs, mask), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(qs, 4), mask), eight);
    __m256 s = _mm256_mul_ps(CK_I8_LO(lo), _mm256_loadu_ps(xb));
    s = _mm256_fmadd_ps(CK_I8_HI(lo), _mm256_loadu_ps(xb + 8), s);
    s = _mm256_fmadd_ps(CK_I8_LO(hi), _mm256_loadu_ps(xb + 16), s);
    return _mm256_fmadd_ps(CK_I8_HI(hi), _mm256_loadu_ps(xb + 24), s);
}

CK_GGML_AVX2 static float q4_0_row_avx2(const unsigned char *row, size_t blocks, const float *x) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= blocks; b += 2) {
        const unsigned char *blk = row + Q4_0_BYTES * b;
        const __m256 s0 = q4_0_block_avx2(blk, x + Q4_0_BLOCK * b);
        const __m256 s1 = q4_0_block_avx2(blk + Q4_0_BYTES, x + Q4_0_BLOCK * (b + 1));
        acc0 = _mm256_fmadd_ps(s0, _mm256_set1_ps(_cvtsh_ss(load_u16(blk))), acc0);
        acc1 = _mm256_fmadd_ps(s1, _mm256_set1_ps(_cvtsh_ss(load_u16(blk + Q4_0_BYTES))), acc1);
    }
    if (b < blocks) {
        const unsigned char *blk = row + Q4_0_BYTES * b;
        acc0 = _mm256_fmadd_ps(q4_0_block_avx2(blk, x + Q4_0_BLOCK * b), _mm256_set1_ps(_cvtsh_ss(load_u16(blk))), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

CK_GGML_AVX2 static inline __m256 q8_0_block_avx2(const unsigned char *blk, const float *xb) {
    const __m128i lo = _mm_loadu_si128((const __m128i *)(blk + 2));
    const __m128i hi = _mm_loadu_si128((const __m128i *)(blk + 18));
    __m256 s = _mm256_mul_ps(CK_I8_LO(lo), _mm256_loadu_ps(xb));
    s = _mm256_fmadd_ps(CK_I8_HI(lo), _mm256_loadu_ps(xb + 8), s);
    s = _mm256_fmadd_ps(CK_I8_LO(hi), _mm256_loadu_ps(xb + 16), s);
    return _mm256_fmadd_ps(CK_I8_HI(hi), _mm256_loadu_ps(xb + 24), s);
}

CK_GGML_AVX2 static float q8_0_row_avx2(const unsigned char *row, size_t blocks, const float *x) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t b = 0;
    for (; b + 2 <= blocks; b += 2) {
        const unsigned char *blk = row + Q8_0_BYTES * b;
        const __m256 s0 = q8_0_block_avx2(blk, x + Q8_0_BLOCK * b);
        const __m256 s1 = q8_0_block_avx2(blk + Q8_0_BYTES, x + Q8_0_BLOCK * (b + 1));
        acc0 = _mm256_fmadd_ps(s0, _mm256_set1_ps(_cvtsh_ss(load_u16(blk))), acc0);
        acc1 = _mm256_fmadd_ps(s1, _mm256_set1_ps(_cvtsh_ss(load_u16(blk + Q8_0_BYTES))), acc1);
    }
    if (b < blocks) {
        const unsigned char *blk = row + Q8_0_BYTES * b;
        acc0 = _mm256_fmadd_ps(q8_0_block_avx2(blk, x + Q8_0_BLOCK * b), _mm256_set1_ps(_cvtsh_ss(load_u16(blk))), acc0);
    }
    return hsum(_mm256_add_ps(acc0, acc1));
}

/// One (half, shift) slice of a Q2_K block: the 32 two-bit codes at `shift` of the half's 32 bytes `q`, which
/// are elements base ..< base + 32 (two sub-blocks), dotted with x and scaled by the two sub-blocks' dl.
#define CK_Q2K_SLICE(SHIFT)                                                                                        \
    do {                                                                                                           \
        const __m256i v = _mm256_and_si256(_mm256_srli_epi16(q, 2 * (SHIFT)), m3);                                 \
        const __m128i v0 = _mm256_castsi256_si128(v), v1 = _mm256_extracti128_si256(v, 1);                        \
        const float *xp = xb + 128 * half + 32 * (SHIFT);                                                          \
        __m256 s0 = _mm256_mul_ps(CK_U8_LO(v0), _mm256_loadu_ps(xp));                                             \
        s0 = _mm256_fmadd_ps(CK_U8_HI(v0), _mm256_loadu_ps(xp + 8), s0);                                           \
        __m256 s1 = _mm256_mul_ps(CK_U8_LO(v1), _mm256_loadu_ps(xp + 16));                                        \
        s1 = _mm256_fmadd_ps(CK_U8_HI(v1), _mm256_loadu_ps(xp + 24), s1);                                          \
        const int sb = 8 * half + 2 * (SHIFT);                                                                     \
        acc0 = _mm256_fmadd_ps(s0, _mm256_broadcast_ss(dl + sb), acc0);                                            \
        acc1 = _mm256_fmadd_ps(s1, _mm256_broadcast_ss(dl + sb + 1), acc1);                                        \
    } while (0)

CK_GGML_AVX2 static float q2_k_row_avx2(const unsigned char *row, size_t blocks, const float *x, const float *sums) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), mins = _mm256_setzero_ps();
    const __m256i m3 = _mm256_set1_epi8(3);
    const __m128i m15 = _mm_set1_epi8(0xF);
    for (size_t b = 0; b < blocks; b++) {
        const unsigned char *blk = row + Q2_K_BYTES * b;
        const float *xb = x + Q2_K_BLOCK * b;
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(load_u16(blk + 80)));
        const __m256 dmin = _mm256_set1_ps(_cvtsh_ss(load_u16(blk + 82)));
        const __m128i sc = _mm_loadu_si128((const __m128i *)blk);
        const __m128i scale = _mm_and_si128(sc, m15), min = _mm_and_si128(_mm_srli_epi16(sc, 4), m15);
        float dl[16];
        _mm256_storeu_ps(dl, _mm256_mul_ps(d, CK_U8_LO(scale)));
        _mm256_storeu_ps(dl + 8, _mm256_mul_ps(d, CK_U8_HI(scale)));
        mins = _mm256_fmadd_ps(_mm256_mul_ps(dmin, CK_U8_LO(min)), _mm256_loadu_ps(sums + 16 * b), mins);
        mins = _mm256_fmadd_ps(_mm256_mul_ps(dmin, CK_U8_HI(min)), _mm256_loadu_ps(sums + 16 * b + 8), mins);
        for (int half = 0; half < 2; half++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * half));
            CK_Q2K_SLICE(0);
            CK_Q2K_SLICE(1);
            CK_Q2K_SLICE(2);
            CK_Q2K_SLICE(3);
        }
    }
    return hsum(_mm256_add_ps(acc0, acc1)) - hsum(mins);
}
#endif

// MARK: - Dispatch

int ck_ggml_matvec(int level, int type, const void *blocks, size_t row_begin, size_t row_end, size_t cols,
                   const float *x, size_t m, float *y, size_t ldy) {
    const size_t row_bytes = ck_ggml_row_bytes(type, cols);
    if (row_bytes == 0) return -1;
    const unsigned char *w = blocks;
    const int avx2 = ck_usable_level(level) >= CK_LEVEL_AVX2FMA;
    (void)avx2;
    if (type == CK_GGML_Q2_K) {
        float stack[CK_Q2K_STACK_SUMS];
        float *sums = cols / 16 <= CK_Q2K_STACK_SUMS ? stack : malloc(cols / 16 * sizeof(float));
        if (sums == NULL) return -2;
        const size_t nb = cols / Q2_K_BLOCK;
        for (size_t t = 0; t < m; t++) {
            const float *xt = x + t * cols;
            sums16(xt, cols, sums);
            for (size_t r = row_begin; r < row_end; r++) {
#if defined(__x86_64__)
                if (avx2) {
                    y[t * ldy + r] = q2_k_row_avx2(w + r * row_bytes, nb, xt, sums);
                    continue;
                }
#endif
                y[t * ldy + r] = q2_k_row_portable(w + r * row_bytes, nb, xt, sums);
            }
        }
        if (sums != stack) free(sums);
        return 0;
    }
    const size_t nb = cols / 32;
    for (size_t t = 0; t < m; t++) {
        const float *xt = x + t * cols;
        for (size_t r = row_begin; r < row_end; r++) {
            const unsigned char *row = w + r * row_bytes;
            float v;
#if defined(__x86_64__)
            if (avx2) {
                v = type == CK_GGML_Q4_0 ? q4_0_row_avx2(row, nb, xt) : q8_0_row_avx2(row, nb, xt);
                y[t * ldy + r] = v;
                continue;
            }
#endif
            v = type == CK_GGML_Q4_0 ? q4_0_row_portable(row, nb, xt) : q8_0_row_portable(row, nb, xt);
            y[t * ldy + r] = v;
        }
    }
    return 0;
}
