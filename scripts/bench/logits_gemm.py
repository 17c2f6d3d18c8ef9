#!/usr/bin/env python3
"""`k2pack logits` against the OpenBLAS sgemm rate on the same shapes, in one run (issue 16, speed).

For each run (WINDOWSxCTX) on a warm page cache:
- runs `k2pack logits MODEL --ids IDS.h5 --out OUT.h5 --quiet --threads N [EXTRA]` with `K2PACK_IO_REPORT=1`,
  which makes k2pack print the wall time of each layer-major step (embedding, each layer, lm_head + writing) and,
  per step, the seconds spent in attention's softmax(q·kᵀ)·v (`attention-core`), in the attention's projections
  and in the MLP / MoE block;
- computes each step's useful FLOPs from config.json (2 per multiply-add: the attention projections, the causal
  attention core, the dense MLP or the router + 8 routed experts + shared expert per token, lm_head);
- times OpenBLAS `cblas_sgemm` on the same shapes with the same thread count, before and after the k2pack run
  (keeping the better time of the two), in this process, through the
  library k2pack itself links (found with `ldd`, loaded with ctypes; not numpy's bundled BLAS): each shape
  `[m × k] · [n × k]ᵀ` with m = the step's rows (routed experts: m = rows · top_k / experts, the mean tokens per
  expert), n capped at 1024 (the rate no longer depends on n there; the time is scaled to the full n), best of 3;
  the causal attention core as per (window, head) products `[T × qk]·[T × qk]ᵀ` and `[T × T]·[T × v]` counted
  at their causal (half) FLOPs;
- prints per step: wall time, useful GFLOP, achieved GFLOP/s, the sgemm time for the same work and GFLOP/s, the
  fraction of the sgemm rate (sgemm time / wall time), the same with CPU seconds of all threads (k2pack's per step
  from getrusage, sgemm's from process_time: less sensitive to other processes' load on a shared machine), and
  attention-core's share of the step.

With `--before`, each run is also made with `K2PACK_PREFILL=plain` (the plain attention loop and 4 MiB blocks:
the pass before the blocked attention), alternating, in the same process. With `--before-binary PATH`, each run
is made first with that k2pack binary (pass `before`), then with `--k2pack` (pass `after`).

    python scripts/bench/logits_gemm.py /work/synth/k25-l2 --k2pack .build/release/k2pack --runs 8x512 \\
        --extra "--batch-windows 8"
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import subprocess
import tempfile
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from logits_io import write_random_ids  # noqa: E402

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def linked_openblas(k2pack: str) -> str:
    """The OpenBLAS k2pack uses: the one it links (older builds), else the one COpenBLAS opens with dlopen
    (`K2PACK_OPENBLAS_LIBRARY`, else libopenblas.so.0 as the loader finds it)."""
    out = subprocess.run(["ldd", k2pack], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if "openblas" in line and "=>" in line:
            return os.path.realpath(line.split("=>")[1].split("(")[0].strip())
    if os.environ.get("K2PACK_OPENBLAS_LIBRARY"):
        return os.path.realpath(os.environ["K2PACK_OPENBLAS_LIBRARY"])
    cache = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    for line in cache.splitlines():
        if line.strip().startswith("libopenblas.so.0 ") and "=>" in line:
            return os.path.realpath(line.split("=>")[1].strip())
    raise SystemExit(f"{k2pack} does not link OpenBLAS and the loader finds no libopenblas.so.0")


class SGEMM:
    def __init__(self, path: str, threads: int):
        self.lib = ctypes.CDLL(path)
        self.lib.openblas_set_num_threads(ctypes.c_int(threads))
        self.lib.openblas_get_config.restype = ctypes.c_char_p
        self.config = self.lib.openblas_get_config().decode()
        self.path = path
        self.cache: dict[tuple[int, int, int, bool], float] = {}
        self.cpu: dict[tuple[int, int, int, bool], float] = {}
        f = self.lib.cblas_sgemm
        f.restype = None
        P = ctypes.c_void_p
        f.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, P, ctypes.c_int, P, ctypes.c_int, ctypes.c_float, P, ctypes.c_int]

    def seconds(self, m: int, n: int, k: int, trans_b: bool = True, cap: int = 1024, again: bool = False) -> float:
        """Best-of-3 seconds of c[m, n] = a[m, k] · b (b [n, k] transposed, or [k, n]), n capped, scaled to n.
        Cached; `again` measures once more and keeps the better (sgemm is timed before and after each k2pack run,
        so a change of load during the run cannot flatter k2pack)."""
        key = (m, n, k, trans_b)
        if key in self.cache and not again:
            return self.cache[key]
        nn = min(n, cap)
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((nn, k) if trans_b else (k, nn), dtype=np.float32)
        c = np.zeros((m, nn), dtype=np.float32)
        best = best_cpu = float("inf")
        for _ in range(3):
            start, start_cpu = time.perf_counter(), time.process_time()
            self.lib.cblas_sgemm(ROW_MAJOR, NO_TRANS, TRANS if trans_b else NO_TRANS, m, nn, k, 1.0,
                                 a.ctypes.data, k, b.ctypes.data, k if trans_b else nn, 0.0, c.ctypes.data, nn)
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, time.process_time() - start_cpu)
        self.cache[key] = min(best * n / nn, self.cache.get(key, float("inf")))
        self.cpu[key] = min(best_cpu * n / nn, self.cpu.get(key, float("inf")))
        return self.cache[key]

    def cpu_seconds(self, m: int, n: int, k: int, trans_b: bool = True) -> float:
        """CPU seconds (all threads) of the same product, as measured by `seconds`."""
        self.seconds(m, n, k, trans_b)
        return self.cpu[(m, n, k, trans_b)]


def text_config(model: Path) -> dict:
    config = json.loads((model / "config.json").read_text())
    return config.get("text_config", config)


def layer_work(c: dict, layer: int, windows: int, tokens: int) -> list[tuple[str, int, int, int, int, bool, float]]:
    """The products of one decoder layer over windows × tokens rows: (part, count, m, n, k, trans_b, useful FLOPs)."""
    rows = windows * tokens
    H, heads = c["hidden_size"], c["num_attention_heads"]
    nope, rope, v = c["qk_nope_head_dim"], c["qk_rope_head_dim"], c["v_head_dim"]
    qk = nope + rope
    q_lora, kv_lora = c["q_lora_rank"], c["kv_lora_rank"]
    work = []

    def linear(part, m, n, k, count=1):
        work.append((part, count, m, n, k, True, 2.0 * m * n * k * count))

    if q_lora:
        linear("attention-projections", rows, q_lora, H)
        linear("attention-projections", rows, heads * qk, q_lora)
    else:
        linear("attention-projections", rows, heads * qk, H)
    linear("attention-projections", rows, kv_lora + rope, H)
    linear("attention-projections", rows, heads * (nope + v), kv_lora)
    linear("attention-projections", rows, H, heads * v)
    causal = tokens * (tokens + 1) / 2
    pairs = windows * heads
    work.append(("attention-core", pairs, tokens, tokens, qk, True, 2.0 * causal * qk * pairs))
    work.append(("attention-core", pairs, tokens, v, tokens, False, 2.0 * causal * v * pairs))
    dense = layer < c.get("first_k_dense_replace", 0) or not c.get("n_routed_experts")
    if dense:
        I = c["intermediate_size"]
        linear("mlp", rows, I, H, 2)
        linear("mlp", rows, H, I)
    else:
        E, k, I = c["n_routed_experts"], c["num_experts_per_tok"], c["moe_intermediate_size"]
        shared = c.get("n_shared_experts", 0) or 0
        linear("mlp", rows, E, H)
        per_expert = max(1, round(rows * k / E))
        # Every token's k experts: the FLOPs are exact; the shape uses the mean tokens per expert.
        work.append(("mlp", E, per_expert, I, H, True, 2.0 * rows * k * I * H * 2))
        work.append(("mlp", E, per_expert, H, I, True, 2.0 * rows * k * I * H))
        if shared:
            linear("mlp", rows, I * shared, H, 2)
            linear("mlp", rows, H, I * shared)
    return work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--k2pack", default=".build/release/k2pack")
    ap.add_argument("--runs", default="8x512", help="comma-separated WINDOWSxCTX")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--extra", default="", help="more k2pack logits arguments, space-separated")
    ap.add_argument("--before", action="store_true", help="also run each with K2PACK_PREFILL=plain (the pass before)")
    ap.add_argument("--before-binary", help="also run each with this k2pack binary first (pass 'before')")
    args = ap.parse_args()

    c = text_config(args.model)
    lib = linked_openblas(args.k2pack)
    sgemm = SGEMM(lib, args.threads)
    print(f"OpenBLAS linked by {args.k2pack}: {lib} ({sgemm.config}), {args.threads} threads")
    print(f"load average before: {os.getloadavg()}")
    layers = c["num_hidden_layers"]
    summary = []
    with tempfile.TemporaryDirectory(prefix="logits-gemm-") as tmp:
        for run in args.runs.split(","):
            windows, tokens = (int(x) for x in run.split("x"))
            ids = write_random_ids(Path(tmp) / f"ids-{windows}x{tokens}.h5", windows, tokens, c["vocab_size"])
            modes = ["plain", "blocked"] if args.before else ["before", "after"] if args.before_binary else ["blocked"]
            for mode in modes:
                def time_shapes(again: bool) -> None:
                    for layer in range(layers):
                        for _, _, m, n, k, trans_b, _ in layer_work(c, layer, windows, tokens):
                            sgemm.seconds(m, n, k, trans_b, again=again)
                time_shapes(False)
                out = Path(tmp) / "out.h5"
                binary = args.before_binary if mode == "before" else args.k2pack
                cmd = [binary, "logits", str(args.model), "--ids", str(ids), "--out", str(out), "--quiet",
                       "--threads", str(args.threads), *args.extra.split()]
                env = {**os.environ, "K2PACK_IO_REPORT": "1"}
                env.pop("K2PACK_PREFILL", None)
                if mode == "plain":
                    env["K2PACK_PREFILL"] = "plain"
                print(f"\n$ K2PACK_IO_REPORT=1{' K2PACK_PREFILL=plain' if mode == 'plain' else ''} {' '.join(cmd)}")
                print(f"load average: {os.getloadavg()}")
                p = subprocess.run(cmd, env=env, capture_output=True, text=True)
                print(p.stdout.strip())
                if p.returncode != 0:
                    print(p.stderr)
                    raise SystemExit(f"k2pack exited {p.returncode}")
                out.unlink(missing_ok=True)
                steps = [float(s) for s in re.findall(r"io-report: step \d+/\d+ ([\d.]+) s", p.stderr)]
                cpus = [float(s) for s in re.findall(r"io-report: cpu \d+/\d+ ([\d.]+) s", p.stderr)]
                phases = [dict((k, float(v)) for k, v in re.findall(r"([\w-]+) ([\d.]+) s", line))
                          for line in re.findall(r"io-report: phases \d+/\d+ (.*)", p.stderr)]
                print(f"load average after: {os.getloadavg()}")
                time_shapes(True)
                print(f"load average after timing sgemm again: {os.getloadavg()}")
                print(f"| step | wall s | useful GFLOP | GFLOP/s | sgemm s, same work | sgemm GFLOP/s | fraction of sgemm rate | CPU s | sgemm CPU s | fraction, CPU time | attention-core share | attention projections s | mlp s |")
                print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
                for layer in range(layers):
                    wall = steps[layer + 1]
                    work = layer_work(c, layer, windows, tokens)
                    flops = sum(w[6] for w in work)
                    blas = blas_cpu = 0.0
                    for part, count, m, n, k, trans_b, useful in work:
                        # The causal core is timed as the full square product and counted at its useful half.
                        share = useful / (2.0 * count * m * n * k) if part == "attention-core" else 1.0
                        blas += sgemm.seconds(m, n, k, trans_b) * count * share
                        blas_cpu += sgemm.cpu_seconds(m, n, k, trans_b) * count * share
                    cpu = cpus[layer + 1] if len(cpus) > layer + 1 else None
                    cpu_text = f"{cpu:.2f} | {blas_cpu:.2f} | {100 * blas_cpu / cpu:.0f} %" if cpu else "n/a | n/a | n/a"
                    ph = phases[layer + 1] if len(phases) > layer + 1 else {}
                    core = ph.get("attention-core")
                    share = f"{100 * core / wall:.1f} %" if core is not None else "n/a"
                    print(f"| layer {layer} ({'dense' if layer < c.get('first_k_dense_replace', 0) else 'MoE'}) | {wall:.2f} | "
                          f"{flops / 1e9:,.0f} | {flops / wall / 1e9:.1f} | {blas:.2f} | {flops / blas / 1e9:.1f} | "
                          f"**{100 * blas / wall:.0f} %** | {cpu_text} | {share} | {ph.get('attention-projections', float('nan')):.2f} | "
                          f"{ph.get('mlp', float('nan')):.2f} |")
                    summary.append((run, mode, layer, wall, flops, blas, core, cpu, blas_cpu))
                lm = 2.0 * windows * tokens * c["hidden_size"] * c["vocab_size"]
                print(f"embedding {steps[0]:.2f} s; final norm + lm_head + writing {steps[-1]:.2f} s "
                      f"({lm / 1e9:,.0f} GFLOP, {lm / steps[-1] / 1e9:.1f} GFLOP/s)")
    print(f"\nload average at the end: {os.getloadavg()}")
    print("\n| run | pass | layer | wall s | GFLOP/s | sgemm GFLOP/s | fraction | fraction, CPU time | attention-core share |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for run, mode, layer, wall, flops, blas, core, cpu, blas_cpu in summary:
        share = f"{100 * core / wall:.1f} %" if core is not None else "n/a"
        cpu_fraction = f"{100 * blas_cpu / cpu:.0f} %" if cpu else "n/a"
        print(f"| {run} | {mode} | {layer} | {wall:.2f} | {flops / wall / 1e9:.1f} | {flops / blas / 1e9:.1f} | {100 * blas / wall:.0f} % | {cpu_fraction} | {share} |")


if __name__ == "__main__":
    main()
