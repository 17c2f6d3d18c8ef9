#!/usr/bin/env python3
"""Baseline for `k2pack quantize` / `k2pack dequantize`: the same job with compressed-tensors, the way a user
would write it, streaming one shard at a time.

    python scripts/bench/quantize_python.py quantize   BF16_DIR OUT_DIR [--limit N]
    python scripts/bench/quantize_python.py dequantize INT4_DIR OUT_DIR [--limit N]

quantize: every routed-expert Linear `.weight` (the K2.5 scheme's targets minus its ignore list, decided by
compressed-tensors' own matcher) → compute_dynamic_scales_and_zp (minmax, group 32) + PackedQuantizationCompressor;
dequantize: PackedQuantizationCompressor.decompress (bf16(q*s)). Other tensors are copied. Each shard is read
with safe_open and written with save_file. Prints one JSON line with the seconds and bytes.

--limit N: only the first N quantized (or dequantized) modules, in memory, nothing written: the library's
throughput on full-width tensors when a whole shard would not fit in memory (a full-width MoE layer's BF16
experts are 34 GB in one shard). Bytes counted: the BF16 weights (quantize) or the packed codes and scales
(dequantize).
"""

import json
import sys
import time
from pathlib import Path

import torch
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.utils import compute_dynamic_scales_and_zp
from compressed_tensors.utils.match import is_match
from safetensors import safe_open
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_synthetic_k25 import QUANTIZATION_CONFIG  # noqa: E402

ARGS = QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=32, observer="minmax", dynamic=False)
SCHEME = QuantizationScheme(targets=["Linear"], weights=ARGS)
SHELL = torch.nn.Linear(1, 1, bias=False)


def targeted(name: str) -> bool:
    if not name.endswith(".weight"):
        return False
    module = name[: -len(".weight")].removeprefix("language_model.")
    return ".mlp.experts." in module and is_match(module, SHELL, targets=["Linear"], ignore=QUANTIZATION_CONFIG["ignore"])


def main() -> int:
    mode, src, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    limit = int(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else None
    if limit is not None:
        return sample(mode, src, limit)
    out.mkdir(parents=True, exist_ok=True)
    index = src / "model.safetensors.index.json"
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    start = time.perf_counter()
    nbytes = 0
    for shard in shards:
        result = {}
        with safe_open(str(src / shard), framework="pt") as f:
            names = list(f.keys())
            for name in names:
                if mode == "dequantize" and (name.endswith(".weight_scale") or name.endswith(".weight_shape")):
                    continue
                t = f.get_tensor(name)
                nbytes += t.numel() * t.element_size()
                if mode == "quantize" and targeted(name):
                    scale, zp = compute_dynamic_scales_and_zp(value=t, args=ARGS, module=None)
                    packed = PackedQuantizationCompressor.compress({"weight": t, "weight_scale": scale, "weight_zero_point": zp}, SCHEME)
                    module = name[: -len(".weight")]
                    for k, v in packed.items():
                        result[f"{module}.{k}"] = v.to(torch.int32) if k == "weight_shape" else v
                elif mode == "dequantize" and name.endswith(".weight_packed"):
                    module = name[: -len(".weight_packed")]
                    parts = {"weight_packed": t, "weight_scale": f.get_tensor(module + ".weight_scale"),
                             "weight_shape": f.get_tensor(module + ".weight_shape")}
                    result[module + ".weight"] = PackedQuantizationCompressor.decompress(parts, SCHEME)["weight"]
                else:
                    result[name] = t
        save_file(result, str(out / shard), metadata={"format": "pt"})
        del result
    print(json.dumps({"mode": mode, "seconds": time.perf_counter() - start, "input_bytes": nbytes}))
    return 0


def sample(mode: str, src: Path, limit: int) -> int:
    index = src / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
    else:
        with safe_open(str(src / "model.safetensors"), framework="pt") as f:
            weight_map = {n: "model.safetensors" for n in f.keys()}
    if mode == "quantize":
        names = [n for n in sorted(weight_map) if targeted(n)][:limit]
    else:
        names = [n for n in sorted(weight_map) if n.endswith(".weight_packed")][:limit]
    nbytes, busy = 0, 0.0
    for name in names:
        with safe_open(str(src / weight_map[name]), framework="pt") as f:
            t = f.get_tensor(name)
            if mode == "quantize":
                nbytes += t.numel() * t.element_size()
                start = time.perf_counter()
                scale, zp = compute_dynamic_scales_and_zp(value=t, args=ARGS, module=None)
                PackedQuantizationCompressor.compress({"weight": t, "weight_scale": scale, "weight_zero_point": zp}, SCHEME)
            else:
                module = name[: -len(".weight_packed")]
                parts = {"weight_packed": t, "weight_scale": f.get_tensor(module + ".weight_scale"),
                         "weight_shape": f.get_tensor(module + ".weight_shape")}
                nbytes += sum(v.numel() * v.element_size() for v in parts.values())
                start = time.perf_counter()
                PackedQuantizationCompressor.decompress(parts, SCHEME)
            busy += time.perf_counter() - start
    print(json.dumps({"mode": mode, "modules": len(names), "compute_seconds": busy, "input_bytes": nbytes,
                      "gb_per_s": nbytes / busy / 1e9, "threads": torch.get_num_threads()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
