#!/usr/bin/env python3
"""`k2pack logits` reads the model once per run, however many windows (issue 16, layer-major).

For each run (WINDOWSxCTX), on a cold page cache:
- evicts the model's pages: `sync; echo 3 > /proc/sys/vm/drop_caches` when allowed (says so when not), and in any
  case `posix_fadvise(DONTNEED)` on every model file (what an unprivileged user can do for these files);
- runs `k2pack logits MODEL --ids IDS.h5 --out OUT.h5 --top-k 800` under `/usr/bin/time -f %M` (peak RSS) with
  `K2PACK_IO_REPORT=1`, which makes k2pack print its own `/proc/self/io` just before it exits, and the wall time of
  each layer-major step (embedding, each layer, lm_head and writing);
- prints `read_bytes` (bytes this process made the kernel fetch from storage: page faults on the mapped model
  included) and `rchar` (bytes through read(2)-like calls: the safetensors headers, the ids, the spill file)
  against the model's tensor bytes (from the safetensors headers).

The ids are random (seeded) in the model's vocabulary, written by this script as an `input_ids [C, T]` dump.

    python scripts/bench/logits_io.py /work/synth/k25-l2 --k2pack .build/release/k2pack --runs 1x16,16x16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np


def tensor_bytes(model: Path) -> tuple[int, int]:
    """(tensor data bytes, file bytes) over the model's safetensors files."""
    data = files = 0
    for path in sorted(model.glob("*.safetensors")):
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        data += sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")
        files += path.stat().st_size
    return data, files


def evict(model: Path) -> str:
    how = []
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        how.append("drop_caches")
    except OSError as e:
        how.append(f"drop_caches not allowed ({e.strerror})")
    for path in sorted(model.iterdir()):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    how.append("fadvise DONTNEED")
    return ", ".join(how)


def write_random_ids(path: Path, windows: int, tokens: int, vocab: int) -> Path:
    """An `--ids` dump of `windows` × `tokens` random ids below `vocab` (seed 16: every benchmark gets the same ids)."""
    rng = np.random.default_rng(16)
    with h5py.File(path, "w") as f:
        f["input_ids"] = rng.integers(0, vocab, size=(windows, tokens)).astype(np.int32)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--k2pack", default=".build/release/k2pack")
    ap.add_argument("--runs", default="1x16,16x16", help="comma-separated WINDOWSxCTX")
    ap.add_argument("--warm", action="store_true", help="do not evict the page cache (timing runs)")
    ap.add_argument("--extra", default="", help="more k2pack logits arguments, space-separated")
    args = ap.parse_args()

    config = json.loads((args.model / "config.json").read_text())
    vocab = config.get("text_config", config)["vocab_size"]
    data, files = tensor_bytes(args.model)
    print(f"model {args.model}: tensor bytes {data:,} ({data / 2**30:.2f} GiB), file bytes {files:,}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="logits-io-") as tmp:
        for run in args.runs.split(","):
            c, t = (int(x) for x in run.split("x"))
            ids = write_random_ids(Path(tmp) / f"ids-{c}x{t}.h5", c, t, vocab)
            cache = "warm" if args.warm else evict(args.model)
            out = Path(tmp) / f"ref-{c}x{t}.h5"
            cmd = ["/usr/bin/time", "-f", "peak-rss-kb %M", args.k2pack, "logits", str(args.model), "--ids", str(ids),
                   "--out", str(out), "--quiet", *args.extra.split()]
            start = time.perf_counter()
            p = subprocess.run(cmd, env={**os.environ, "K2PACK_IO_REPORT": "1"}, capture_output=True, text=True)
            wall = time.perf_counter() - start
            print(f"$ K2PACK_IO_REPORT=1 {' '.join(cmd)}   # cache: {cache}")
            print(p.stdout.strip())
            print(p.stderr.strip())
            if p.returncode != 0:
                raise SystemExit(f"k2pack exited {p.returncode}")
            io = {k: int(v) for k, v in re.findall(r"io-report: (\w+): (\d+)", p.stderr)}
            steps = [float(s) for s in re.findall(r"io-report: step \d+/\d+ ([\d.]+) s", p.stderr)]
            rss = int(re.search(r"peak-rss-kb (\d+)", p.stderr).group(1)) * 1024
            rows.append((c, t, io["read_bytes"], io["rchar"], rss, wall, steps, cache))
            out.unlink(missing_ok=True)
    print()
    print("| windows × ctx | cache | read_bytes | read_bytes / tensor bytes | rchar | peak RSS | wall | steps (s: embed, layers…, lm_head) |")
    print("|---|---|---:|---:|---:|---:|---:|---|")
    for c, t, rb, rc, rss, wall, steps, cache in rows:
        print(f"| {c} × {t} | {'warm' if cache == 'warm' else 'cold'} | {rb / 1e9:.2f} GB | {rb / data:.3f} | {rc / 1e6:.1f} MB | "
              f"{rss / 2**20:.0f} MiB | {wall:.1f} s | {', '.join(f'{s:.1f}' for s in steps)} |")


if __name__ == "__main__":
    main()
