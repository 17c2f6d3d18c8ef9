#ifndef K2PACK_GGML_KERNELS_H
#define K2PACK_GGML_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Few-token products straight from ggml's quantized blocks (GGUF tensors), without writing the dequantized
/// weights anywhere: each block is unpacked in registers and dotted with the float32 activations.
///
/// Semantics: the product of the activations with the weights ggml's dequantizer defines for each block
/// (`Sources/GGUF/GGUFDequantizer.swift`, bit-exact with gguf-py), in float32, up to the order and the
/// contraction of the float operations: per block (Q4_0, Q8_0) or sub-block of 16 (Q2_K) the products are summed
/// first and scaled once, and the vector path fuses multiplies and adds (FMA). So the levels do not give the same
/// bits; tests bound each against dequantize-then-dot.
///
/// Levels are those of ckernels.h, lowered to what the CPU supports by the same `ck_usable_level`: the vector path
/// (AVX2, FMA, F16C) runs at CK_LEVEL_AVX2FMA; CK_LEVEL_PORTABLE and CK_LEVEL_AVX2 run the plain C path.

/// ggml type ids with a fused kernel.
enum {
    CK_GGML_Q4_0 = 2,
    CK_GGML_Q8_0 = 8,
    CK_GGML_Q2_K = 10,
};

/// Bytes of one row of `cols` weights of `type`, or 0 when `type` has no kernel here or `cols` is not a whole
/// number of its blocks.
size_t ck_ggml_row_bytes(int type, size_t cols);

/// `y[t * ldy + r] = Σ_c x[t * cols + c] · W[r, c]` for r in [row_begin, row_end), t in [0, m), where row r of W
/// is ck_ggml_row_bytes(type, cols) bytes of ggml blocks starting at `blocks + r · row_bytes` (unaligned,
/// little-endian). Returns 0, or -1 (and writes nothing) when ck_ggml_row_bytes(type, cols) is 0.
int ck_ggml_matvec(int level, int type, const void *blocks, size_t row_begin, size_t row_end, size_t cols,
                   const float *x, size_t m, float *y, size_t ldy);

#endif
