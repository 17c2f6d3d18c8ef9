#!/usr/bin/env python3
"""Dequantization throughput: k2pack's GGUFDequantizer against gguf-py 0.19's gguf.quants.dequantize.

    python scripts/bench/gguf_dequant.py [--elements N] [--types Q4_0,Q2_K,...] [--work DIR]

Per type: N elements (default 2^24) of random blocks with finite scales (the fixture generator's rule,
scripts/fixtures/make_gguf.py), written to DIR (default /dev/shm/gguf-bench). gguf-py dequantizes the array in
memory (best of 2); the Swift driver (scripts/bench/gguf_dequant/main.swift, compiled here with `swiftc -O`
together with the library's dequantizer sources) dequantizes the same bytes (best of 3) with 1 and 2 threads.
The two outputs' hashes must agree (bit-exact on every element, not only on the fixtures). Prints a Markdown table.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q
from gguf import quants

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "fixtures"))
import make_gguf  # noqa: E402

SOURCES = ["GGMLType.swift", "GGUFDequantizer.swift", "IQTableStore.swift", "IQTables.swift"]
TYPES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "TQ1_0", "TQ2_0",
         "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_NL", "IQ4_XS", "MXFP4"]


def output_hash(values):
    bits = values.reshape(-1).view(np.uint32).astype(np.uint64)
    odd = np.arange(bits.size, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    return int(np.sum(bits * odd, dtype=np.uint64))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--elements", type=int, default=1 << 24)
    p.add_argument("--types", default=",".join(TYPES))
    p.add_argument("--work", default="/dev/shm/gguf-bench")
    args = p.parse_args()
    os.makedirs(args.work, exist_ok=True)
    driver = os.path.join(args.work, "gguf-dequant-bench")
    subprocess.run(["swiftc", "-O", "-o", driver, os.path.join(ROOT, "scripts/bench/gguf_dequant/main.swift")]
                   + [os.path.join(ROOT, "Sources/GGUF", s) for s in SOURCES], check=True)
    rng = np.random.default_rng(1)
    rows = []
    for name in args.types.split(","):
        qtype = Q[name]
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        n_blocks = args.elements // block_size
        if block_size == 1:
            raw = make_gguf.plain_values(rng, name, n_blocks)
            raw = raw.view(np.uint16)
            exponent = raw & 0x7C00 if name == "F16" else raw & 0x7F80
            raw = np.where(exponent == (0x7C00 if name == "F16" else 0x7F80), raw & 0x3FFF, raw).astype(np.uint16).view(np.uint8)
            raw = raw.reshape(1, -1)
        else:
            raw = make_gguf.edge_blocks(rng, name, n_blocks, type_size).reshape(1, -1)
        path = os.path.join(args.work, f"{name}.bin")
        raw.tofile(path)
        best_py = float("inf")
        for _ in range(2):
            start = time.perf_counter()
            values = quants.dequantize(raw, qtype)
            best_py = min(best_py, time.perf_counter() - start)
        expected = output_hash(np.ascontiguousarray(values, dtype=np.float32))
        del values
        swift = {}
        for threads in (1, 2):
            out = subprocess.run([driver, name, path, "3", str(threads)], check=True, capture_output=True, text=True).stdout
            swift[threads] = json.loads(out)
            if swift[threads]["hash"] != expected:
                sys.exit(f"{name}: the Swift output differs from gguf-py's (hash {swift[threads]['hash']} vs {expected})")
        os.remove(path)
        elements = n_blocks * block_size
        rows.append((name, elements, best_py, swift[1]["seconds"], swift[2]["seconds"]))
        print(json.dumps({"type": name, "elements": elements, "gguf_py": best_py, "swift_1": swift[1]["seconds"],
                          "swift_2": swift[2]["seconds"]}), file=sys.stderr, flush=True)
    print("| type | elements | gguf-py | k2pack, 1 thread | k2pack, 2 threads | speed-up (1 / 2 threads) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, elements, py, s1, s2 in rows:
        def rate(s):
            return f"{s * 1e3:.1f} ms ({elements / s / 1e6:.0f} M/s)"
        print(f"| {name} | {elements:,} | {rate(py)} | {rate(s1)} | {rate(s2)} | {py / s1:.1f}× / {py / s2:.1f}× |")


if __name__ == "__main__":
    main()
