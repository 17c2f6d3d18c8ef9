#!/usr/bin/env python3
"""Does llama.cpp load what `k2pack convert --to gguf` writes, and compute what our forward pass computes?

Not a fixture script and not run in CI: it needs llama-cpp-python (pinned 0.3.36; its install compiles llama.cpp,
20–40 minutes on 2 cores) and a built k2pack. Steps:

  1. makes a tiny Kimi K2-style INT4 checkpoint in a temporary folder with make_fixtures.py's functions (the
     weights through compressed-tensors as the fixtures are), whose vocabulary is exactly the fixture tokenizer's
     (Fixtures/tokenizer: tiktoken ranks + 258 specials), and copies that tokenizer in;
  2. `k2pack convert CKPT OUT.gguf --to gguf` (BF16 matrices, INT4 experts into Q4_0 bit for bit);
  3. `k2pack logits CKPT --ids IDS.h5 --full` — our float32 forward pass on the checkpoint;
  4. gguf-py 0.19 reads OUT.gguf: every routed expert, dequantized by `gguf.quants.dequantize`, must equal the exact
     q·s of the source's compressed-tensors codes and scales, element for element; the tokenizer keys are counted;
  5. llama.cpp: `Llama(OUT.gguf, logits_all=True, yarn_beta_fast=-1, yarn_beta_slow=-1)`, `reset(); eval(ids)`,
     `scores` — and reports, per position, KL(ours || llama.cpp) and whether the top-1 agrees.

llama.cpp rounds activations to 8 bits for Q4_0 products (and to bf16 for BF16 ones) and keeps an F16 KV cache, so
small, non-zero differences are expected; a wrong key or tensor layout shows as garbage (KLD of order 1).

    /work/venv/bin/python scripts/gguf/llamacpp_roundtrip.py --k2pack .build/release/k2pack [--keep DIR] [--json]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "fixtures"))
import make_fixtures as mf  # noqa: E402

PINNED = {"llama-cpp-python": "0.3.36"}
TOKENIZER = ROOT / "Fixtures" / "tokenizer"
SEED = 2611


def make_checkpoint(d: Path, rope: dict) -> dict:
    config_tok = json.loads((TOKENIZER / "tokenizer_config.json").read_text())
    ranks = sum(1 for line in (TOKENIZER / "tiktoken.model").read_text().splitlines() if line.strip())
    specials = {v["content"]: int(k) for k, v in config_tok["added_tokens_decoder"].items()}
    dims = dict(mf.TINY_DIMS, vocab_size=ranks + 258)
    cfg = mf.hf_config(dims, mf.KIMI_ROUTING, rope)
    sd_plain, _ = mf.text_weights(cfg, seed=SEED)
    sd = mf.quantize_experts(sd_plain, torch.int64)
    tokens = dict(bos_token_id=specials.get("[BOS]"), eos_token_id=specials.get("[EOS]"))
    config = mf.raw_text_config(dims, mf.KIMI_ROUTING, rope, "kimi_k2", tokens, quantized=True)
    mf.save_checkpoint(d, sd, None, config)
    for name in ("tiktoken.model", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / name, d / name)
    return dims, cfg, sd


def check_with_gguf_py(path: Path, cfg, sd: dict) -> dict:
    """gguf-py's reading of the file: experts against the exact q·s, and the tokenizer's sizes."""
    import gguf
    from gguf import quants
    from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32

    reader = gguf.GGUFReader(str(path))
    tensors = {t.name: t for t in reader.tensors}
    experts = 0
    for layer in range(cfg.first_k_dense_replace, cfg.num_hidden_layers):
        for proj, g in (("gate_proj", "ffn_gate_exps"), ("up_proj", "ffn_up_exps"), ("down_proj", "ffn_down_exps")):
            t = tensors[f"blk.{layer}.{g}.weight"]
            assert t.tensor_type == gguf.GGMLQuantizationType.Q4_0, (t.name, t.tensor_type)
            values = quants.dequantize(t.data, t.tensor_type).reshape(cfg.n_routed_experts, -1)
            for e in range(cfg.n_routed_experts):
                base = f"model.layers.{layer}.mlp.experts.{e}.{proj}"
                out, cols = (int(x) for x in sd[base + ".weight_shape"].tolist())
                q = unpack_from_int32(sd[base + ".weight_packed"], 4, torch.Size([out, cols])).numpy().astype(np.float32)
                s = np.repeat(sd[base + ".weight_scale"].float().numpy(), 32, axis=1)
                exact = (q * s).astype(np.float32)
                if not np.array_equal(values[e].reshape(out, cols), exact):
                    bad = np.argwhere(values[e].reshape(out, cols) != exact)[0]
                    raise SystemExit(f"{t.name} expert {e}: gguf-py's value differs from q·s at row {bad[0]}, column {bad[1]}")
                experts += 1
    field = reader.fields
    tokens = len(field["tokenizer.ggml.tokens"].data)
    merges = len(field["tokenizer.ggml.merges"].data)
    return {"gguf_py_tensors": len(reader.tensors), "gguf_py_experts_exact": experts, "gguf_py_tokens": tokens,
            "gguf_py_merges": merges}


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x - x.max(axis=-1, keepdims=True)
    return m - np.log(np.exp(m).sum(axis=-1, keepdims=True))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--k2pack", required=True, help="the k2pack binary")
    ap.add_argument("--keep", help="work in this folder and keep it (default: a temporary folder)")
    ap.add_argument("--rope", choices=["k25", "k2-thinking"], default="k25",
                    help="YaRN betas of K2.5 (32/1, what llama.cpp assumes) or K2-Thinking (beta_fast 1, which "
                         "llama.cpp's deepseek2 loader ignores)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    for package, version in PINNED.items():
        found = importlib.metadata.version(package)
        if found != version:
            raise SystemExit(f"{package} {found} found, {version} expected")
    from llama_cpp import Llama

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="llamacpp-compare-"))
    work.mkdir(parents=True, exist_ok=True)
    ckpt, gguf_path, ids_path, ref_path = work / "ckpt", work / "gguf" / "tiny.gguf", work / "ids.h5", work / "ours.h5"
    for p in (ckpt, gguf_path.parent, ids_path, ref_path):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    rope = mf.KIMI_ROPE if args.rope == "k25" else mf.K2_THINKING_ROPE
    dims, cfg, sd = make_checkpoint(ckpt, rope)
    gguf_path.parent.mkdir()
    ids = np.random.default_rng(SEED).integers(0, dims["vocab_size"] - 258, size=(4, 32)).astype(np.int64)
    with h5py.File(ids_path, "w") as f:
        f.create_dataset("input_ids", data=ids)
    subprocess.run([args.k2pack, "convert", str(ckpt), str(gguf_path), "--to", "gguf"], check=True)
    subprocess.run([args.k2pack, "logits", str(ckpt), "--ids", str(ids_path), "--out", str(ref_path), "--full",
                    "--ctx", str(ids.shape[1])], check=True)
    with h5py.File(ref_path, "r") as f:
        ours = np.array(f["logits"], dtype=np.float64)
    readback = check_with_gguf_py(gguf_path, cfg, sd)

    llm = Llama(model_path=str(gguf_path), logits_all=True, n_ctx=2 * ids.shape[1], n_threads=2, n_batch=64,
                yarn_beta_fast=-1, yarn_beta_slow=-1, verbose=False)
    theirs = np.zeros_like(ours)
    for c in range(ids.shape[0]):
        llm.reset()
        llm.eval(ids[c].tolist())
        theirs[c] = np.array(llm.scores[: ids.shape[1]], dtype=np.float64)
    a, b = log_softmax(ours), log_softmax(theirs)
    kld = (np.exp(a) * (a - b)).sum(axis=-1)
    top1 = ours.argmax(axis=-1) == theirs.argmax(axis=-1)
    result = {"rope": args.rope, "windows": int(ids.shape[0]), "ctx": int(ids.shape[1]),
              "vocab": int(dims["vocab_size"]), "gguf_bytes": gguf_path.stat().st_size,
              "mean_kld": float(kld.mean()), "max_kld": float(kld.max()), "same_top1": float(top1.mean()),
              "max_abs_logit_diff": float(np.abs(ours - theirs).max()), "llama_cpp_python": PINNED["llama-cpp-python"],
              **readback}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    if not args.keep:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
