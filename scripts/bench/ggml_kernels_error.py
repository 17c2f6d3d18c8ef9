#!/usr/bin/env python3
"""The fused ggml-block kernels (Sources/CKernels/ggml_kernels.c) against gguf-py's dequantize-then-dot.

Compiles the C file into a temporary shared library (clang), then for Q4_0, Q8_0 and Q2_K, at both levels, on
random blocks (256 rows x 7168, 4 tokens) and on edge blocks (±0, largest and subnormal f16 scales, extreme codes;
activations 1e-30 to 1e4), prints the largest error against a float64 dot of gguf-py's dequantized weights,
relative to Σ|w|·|x| (Q2_K: plus twice its minimum term), and the largest difference from a float32
dequantize-then-BLAS product, each with where it is. The Swift tests (GGMLKernelTests) check the same bound
against GGUFDequantizer without Python; this script gives the figures.

    python scripts/bench/ggml_kernels_error.py
"""
import ctypes
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q

ROOT = Path(__file__).resolve().parents[2]
_tmp = tempfile.mkdtemp()
subprocess.run(["clang", "-O2", "-shared", "-fPIC", "-I", str(ROOT / "Sources/CKernels/include"),
                str(ROOT / "Sources/CKernels/ggml_kernels.c"), str(ROOT / "Sources/CKernels/ckernels.c"),
                "-o", _tmp + "/libggk.so"], check=True)
lib = ctypes.CDLL(_tmp + "/libggk.so")
rng = np.random.default_rng(3)
SC = {Q.Q4_0: [0], Q.Q8_0: [0], Q.Q2_K: [80, 82]}
def run(qt, raw, rows, cols, x, m, level):
    y = np.zeros((m, rows), np.float32)
    lib.ck_ggml_matvec(level, int(qt), raw.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(0), ctypes.c_size_t(rows), ctypes.c_size_t(cols),
        x.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(m), y.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(rows))
    return y
def report(tag, qt, raw, rows, cols, x, m):
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    w = gguf.quants.dequantize(raw.reshape(rows, -1), qt).astype(np.float32).reshape(rows, cols)
    mag = np.abs(w).astype(np.float64)
    if qt == Q.Q2_K:
        blk = raw.reshape(rows, cols // 256, 84)
        dmin = blk[:, :, 82:84].copy().view(np.float16).astype(np.float64)[:, :, 0]
        ml = np.abs(dmin[:, :, None] * (blk[:, :, :16] >> 4)).repeat(16, axis=2).reshape(rows, cols)
        mag = mag + 2 * ml
    ref = x.astype(np.float64) @ w.astype(np.float64).T
    scale = np.abs(x).astype(np.float64) @ mag.T
    f32 = (x @ w.T)  # dequantize-then-dot in float32 (numpy/BLAS)
    for level in [0, 1]:
        y = run(qt, raw, rows, cols, x, m, level)
        with np.errstate(invalid='ignore', divide='ignore'):
            rel = np.abs(y - ref) / np.where(scale > 0, scale, 1)
            d32 = np.abs(y - f32)
        fin = np.isfinite(ref)
        rel = np.where(fin, rel, 0); d32 = np.where(fin, d32, 0)
        i = np.unravel_index(np.argmax(rel), rel.shape); j = np.unravel_index(np.argmax(d32), d32.shape)
        print(f"{tag:6} {qt.name:5} {'portable' if level==0 else 'avx2':8} max rel(float64, Σmag·|x|) {rel[i]:.2e} at token {i[0]} row {i[1]} (|Δ| {abs(y[i]-ref[i]):.2e}); max |Δ| vs float32 dequantize+BLAS {d32[j]:.2e} at token {j[0]} row {j[1]} (|y| {abs(y[j]):.3g})")
for qt in [Q.Q4_0, Q.Q8_0, Q.Q2_K]:
    bs, ts = gguf.GGML_QUANT_SIZES[qt]
    rows, cols, m = 256, 7168, 4
    raw = rng.integers(0, 256, size=(rows, cols // bs, ts), dtype=np.uint8)
    for p in SC[qt]:
        raw[:, :, p:p+2] = (rng.standard_normal((rows, cols // bs)) * 0.01).astype(np.float16).view(np.uint8).reshape(rows, cols // bs, 2)
    x = rng.standard_normal((m, cols)).astype(np.float32)
    report("random", qt, raw, rows, cols, x, m)
    # edge rows
    scales = [0x0000, 0x8000, 0x7BFF, 0xFBFF, 0x0001, 0x8001, 0x03FF, 0x3C00]; fills = [0x00, 0xFF, 0x88, 0x80, 0x7F]
    cols = 2 * bs; rowsl = []
    for s in scales:
        for f in fills:
            r = np.full((2, ts), f, np.uint8)
            for p in SC[qt]: r[:, p] = s & 0xFF; r[:, p+1] = s >> 8
            rowsl.append(r)
    raw = np.stack(rowsl); rows = len(rowsl)
    x = (rng.choice([-1, 1], size=(2, cols)) * 10.0 ** (np.arange(2 * cols).reshape(2, cols) % 35 - 30) * rng.uniform(0.5, 1, (2, cols))).astype(np.float32)
    report("edge", qt, raw, rows, cols, x, 2)
