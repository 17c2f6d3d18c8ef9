#include "prefill_kernels.h"
#include "ckernels.h"

// Results must not depend on the variant: no contraction of a multiply and an add into one rounding.
#pragma STDC FP_CONTRACT OFF
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#include <math.h>
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define PK_AVX2 __attribute__((target("avx2")))
#endif

// Cephes expf: n = round(x · log2 e), r = x − n·C1 − n·C2 (C1 + C2 = ln 2, C1 exact in few bits), then
// e^r ≈ 1 + r + r²·P(r), times 2^n built in the exponent bits.
#define PK_LOWEST (-87.0f)
#define PK_LOG2E 1.44269504088896341f
#define PK_C1 0.693359375f
#define PK_C2 (-2.12194440e-4f)
#define PK_P0 1.9875691500e-4f
#define PK_P1 1.3981999507e-3f
#define PK_P2 8.3334519073e-3f
#define PK_P3 4.1665795894e-2f
#define PK_P4 1.6666665459e-1f
#define PK_P5 5.0000001201e-1f

static inline float exp_portable(float x) {
    if (!(x >= PK_LOWEST)) x = PK_LOWEST;  // also NaN → the lowest: a row of NaNs cannot divide by zero
    float t = x * PK_LOG2E;
    t = t + 0.5f;
    const float n = floorf(t);
    float r = x - n * PK_C1;
    r = r - n * PK_C2;
    const float z = r * r;
    float p = PK_P0;
    p = p * r + PK_P1;
    p = p * r + PK_P2;
    p = p * r + PK_P3;
    p = p * r + PK_P4;
    p = p * r + PK_P5;
    p = p * z;
    p = p + r;
    p = p + 1.0f;
    const int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    __builtin_memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

float ck_exp_nonpositive(float x) { return exp_portable(x); }

static void softmax_row_portable(float *row, size_t valid, size_t count) {
    float top = row[0];
    for (size_t u = 1; u < valid; u++) top = row[u] > top ? row[u] : top;
    float lanes[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t u = 0; u < valid; u++) {
        const float e = exp_portable(row[u] - top);
        row[u] = e;
        lanes[u % 8] = lanes[u % 8] + e;
    }
    float sum = 0.0f;
    for (int j = 0; j < 8; j++) sum = sum + lanes[j];
    for (size_t u = 0; u < valid; u++) row[u] = row[u] / sum;
    for (size_t u = valid; u < count; u++) row[u] = 0.0f;
}

#if defined(__x86_64__)
PK_AVX2 static inline __m256 exp_avx2(__m256 x) {
    // max(x, lowest) with x first: a NaN lane becomes the lowest, as in the portable path.
    x = _mm256_max_ps(x, _mm256_set1_ps(PK_LOWEST));
    __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(PK_LOG2E));
    t = _mm256_add_ps(t, _mm256_set1_ps(0.5f));
    const __m256 n = _mm256_floor_ps(t);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(PK_C1)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(PK_C2)));
    const __m256 z = _mm256_mul_ps(r, r);
    __m256 p = _mm256_set1_ps(PK_P0);
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(PK_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(PK_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(PK_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(PK_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, r), _mm256_set1_ps(PK_P5));
    p = _mm256_mul_ps(p, z);
    p = _mm256_add_ps(p, r);
    p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

PK_AVX2 static void softmax_row_avx2(float *row, size_t valid, size_t count) {
    float top = row[0];
    size_t u = 0;
    if (valid >= 8) {
        __m256 m = _mm256_loadu_ps(row);
        for (u = 8; u + 8 <= valid; u += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(row + u));
        float lanes[8];
        _mm256_storeu_ps(lanes, m);
        for (int j = 0; j < 8; j++) top = lanes[j] > top ? lanes[j] : top;
    }
    for (; u < valid; u++) top = row[u] > top ? row[u] : top;
    const __m256 vtop = _mm256_set1_ps(top);
    __m256 acc = _mm256_setzero_ps();
    for (u = 0; u + 8 <= valid; u += 8) {
        const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + u), vtop));
        _mm256_storeu_ps(row + u, e);
        acc = _mm256_add_ps(acc, e);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, acc);
    // The tail's terms go to their lanes (u % 8) in order, as in the portable path.
    for (; u < valid; u++) {
        const float e = exp_portable(row[u] - top);
        row[u] = e;
        lanes[u % 8] = lanes[u % 8] + e;
    }
    float sum = 0.0f;
    for (int j = 0; j < 8; j++) sum = sum + lanes[j];
    const __m256 vsum = _mm256_set1_ps(sum);
    for (u = 0; u + 8 <= valid; u += 8) _mm256_storeu_ps(row + u, _mm256_div_ps(_mm256_loadu_ps(row + u), vsum));
    for (; u < valid; u++) row[u] = row[u] / sum;
    for (u = valid; u < count; u++) row[u] = 0.0f;
}
#endif

void ck_softmax_row(int level, float *row, size_t valid, size_t count) {
#if defined(__x86_64__)
    if (ck_usable_level(level) >= CK_LEVEL_AVX2) {
        softmax_row_avx2(row, valid, count);
        return;
    }
#endif
    (void)level;
    softmax_row_portable(row, valid, count);
}
