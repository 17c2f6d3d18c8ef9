#!/usr/bin/env python3
"""Decode of one token through one full-width MoE layer: Swift kernels, portable C, AVX2, AVX2 + FMA, and the CPU's best C kernels.

`k2pack parity --layers L..L` on one token's dumped `layer_in` of a synthetic K2.5 checkpoint
(scripts/make_synthetic_k25.py with --fill L), timed with `K2PACK_KERNELS=swift` (the Swift few-token kernels the
C ones replaced), `K2PACK_KERNELS=portable`, `K2PACK_KERNELS=avx2` (the AVX2 level bit-identical to portable, the
dispatched level before the FMA one), `K2PACK_KERNELS=avx2fma` (the dispatched level before the AVX-512 one) and
without it (dispatched by CPU features: AVX-512 where the CPU has F, BW and VL, else AVX2 + FMA), the five alternating (best of N each, warm page cache), then as a fraction of the memory bandwidth measured in the
same run before and after (numpy summing a 2 GiB array on the same thread count; the better of the two), counting
the bytes that token must read (forward_fullwidth.token_bytes); the median time and fraction are printed too, and
each variant's peak RSS (the largest of its runs). The load average is printed with the result. `--baseline BINARY`
adds another k2pack binary (an older commit's release build), timed in the same alternation.

    python scripts/bench/decode_kernels.py /work/synth/k25-l3-kernels --layer 1 --threads 2 --runs 5 [--reread]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from forward_fullwidth import ROOT, bandwidth, token_bytes  # noqa: E402


def evict_layer(model: Path, layer: int) -> int:
    """Drops layer `layer`'s tensors of a Hugging Face folder from the page cache (posix_fadvise DONTNEED; pages
    another process maps stay), so that the warm-up run reads them back through k2pack's mapping, in the folios a
    reader gets (2 MiB under k2pack's MADV_HUGEPAGE) rather than those the checkpoint's writer left. Returns the bytes named."""
    total = 0
    for shard in sorted(model.glob("*.safetensors")):
        with open(shard, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            header = json.loads(fh.read(n))
            for name, t in header.items():
                if name != "__metadata__" and f".layers.{layer}." in f".{name}":
                    start, end = t["data_offsets"]
                    os.posix_fadvise(fh.fileno(), 8 + n + start, end - start, os.POSIX_FADV_DONTNEED)
                    total += end - start
    return total


peak_rss: dict[str, int] = {}


def forward_seconds(cmd: list[str], kernels: str | None, name: str | None = None) -> float:
    """The run's forward_seconds; its peak RSS (`/usr/bin/time -f %M`: the process's own, not this script's, which a
    forked child would inherit) goes to peak_rss[name], the largest of the runs."""
    env = dict(os.environ)
    env.pop("K2PACK_KERNELS", None)
    if kernels is not None:
        env["K2PACK_KERNELS"] = kernels
    out = subprocess.run(["/usr/bin/time", "-f", "peak-rss-kb %M"] + cmd, capture_output=True, text=True, env=env, check=True)
    if name is not None:
        kb = int(out.stderr.strip().splitlines()[-1].split()[-1])
        peak_rss[name] = max(peak_rss.get(name, 0), kb * 1024)
    return json.loads(out.stdout)["forward_seconds"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--layer", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--baseline", type=Path,
                    help="another k2pack binary (an older commit's release build) timed too, kernels dispatched")
    ap.add_argument("--reread", action="store_true",
                    help="first drop the layer's tensors from the page cache, so that the warm-up run reads them back")
    a = ap.parse_args()
    text = json.loads((a.model / "config.json").read_text())
    text = text.get("text_config", text)
    k2pack = str(ROOT / ".build/release/k2pack")
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "k2pack-kernels-bench"
    work.mkdir(exist_ok=True)
    one = work / "one-token.h5"
    with h5py.File(one, "w") as f:
        f["input_ids"] = np.array([[7]], dtype=np.int64)
        f[f"layers/{a.layer}/layer_in"] = np.random.default_rng(0).standard_normal((1, 1, text["hidden_size"])).astype(np.float32)
    cmd = [k2pack, "parity", str(a.model), "--reference", str(one), "--layers", f"{a.layer}..{a.layer}",
           "--threads", str(a.threads), "--json", "--quiet"]
    bw = bandwidth(a.threads)
    evicted = evict_layer(a.model, a.layer) if a.reread else 0
    forward_seconds(cmd, None)  # warm the page cache
    times: dict[str, list[float]] = {"swift": [], "portable": [], "avx2": [], "avx2fma": [], "dispatched": []}
    if a.baseline:
        times["baseline"] = []
    load_before = os.getloadavg()
    for _ in range(a.runs):
        if a.baseline:
            times["baseline"].append(forward_seconds([str(a.baseline.resolve())] + cmd[1:], None, "baseline"))
        times["swift"].append(forward_seconds(cmd, "swift", "swift"))
        times["portable"].append(forward_seconds(cmd, "portable", "portable"))
        times["avx2"].append(forward_seconds(cmd, "avx2", "avx2"))
        times["avx2fma"].append(forward_seconds(cmd, "avx2fma", "avx2fma"))
        times["dispatched"].append(forward_seconds(cmd, None, "dispatched"))
    bw = max(bw, bandwidth(a.threads))
    nbytes = token_bytes(text)
    result = {"decode_layer": a.layer, "threads": a.threads, "bytes_read": nbytes, "memory_bandwidth_gb_per_s": bw,
              "load_average_before": load_before, "load_average_after": os.getloadavg(), "evicted_bytes": evicted}
    for name, ts in times.items():
        t, median = min(ts), float(np.median(ts))
        result[name] = {"seconds": t, "median_seconds": median, "all_seconds": ts, "gb_per_s": nbytes / t / 1e9,
                        "fraction_of_bandwidth": nbytes / t / 1e9 / bw, "median_fraction_of_bandwidth": nbytes / median / 1e9 / bw,
                        "peak_rss_mb": peak_rss[name] / 1e6}
    result["dispatched_vs_portable"] = min(times["portable"]) / min(times["dispatched"])
    result["dispatched_vs_swift"] = min(times["swift"]) / min(times["dispatched"])
    result["dispatched_vs_avx2"] = min(times["avx2"]) / min(times["dispatched"])
    result["dispatched_vs_avx2fma"] = min(times["avx2fma"]) / min(times["dispatched"])
    if a.baseline:
        result["baseline_binary"] = str(a.baseline)
        result["dispatched_vs_baseline"] = min(times["baseline"]) / min(times["dispatched"])
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
