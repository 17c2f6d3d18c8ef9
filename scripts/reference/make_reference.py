#!/usr/bin/env python3
"""Write a k2pack reference dump (HDF5) of a DeepSeek-V3 / Kimi K2.x language model, made by transformers.

The layout is documented in docs/REFERENCE-DUMPS.md. Under GROUP (default: the file's root):
    input_ids                [B, T] int64
    logits                   [B, T, V] float32
    final_norm_out           [B, T, H] float32
    layers/{i}/layer_in      [B, T, H] float32   (decoder layer input, forward pre-hook)
    layers/{i}/attn_out      [B, T, H] float32   (self_attn output, after o_proj)
    layers/{i}/mlp_out       [B, T, H] float32   (MLP / MoE output: routed + shared)
    layers/{i}/layer_out     [B, T, H] float32   (decoder layer output)
    layers/{i}/topk_indices  [B, T, k] int32     (MoE layers: the router's choice, unsorted)
and attributes on GROUP: dequant ("exact" | "bf16" | "none"), dtype, transformers, torch, compressed_tensors,
model_type, min_routing_margin.

How the model is built (transformers is the oracle for the forward pass, compressed-tensors for INT4):
  * config.json is read raw; for K2.5 the nested `text_config` is the language model. A DeepseekV3Config is
    built from it explicitly (a flat `kimi_k2` config through from_pretrained would leave the experts random).
  * every safetensors shard is read with safe_open; `pack-quantized` modules are unpacked with
    compressed-tensors (`unpack_from_int32`) and dequantized by its `dequantize`:
      --dequant exact : q * scale in float32 (exact);
      --dequant bf16  : the library's own decompression, bf16(q * scale), as transformers loads it.
    FP8 block weights (`weight_scale_inv`, DeepSeek-V3) are dequantized per 128 x 128 block in float32.
  * the per-expert tensors are fused into transformers' `gate_up_proj` / `down_proj` and loaded with
    load_state_dict(strict=True), so nothing is left at random.
  * hooks on the decoder layers, their self_attn, mlp and router record the activations.

The whole text model is materialized in --dtype on --device (float32 on a GPU box for a full-width model needs
the memory for it: use --layers-limit to dump the first layers only).

Usage:
    python scripts/reference/make_reference.py MODEL_DIR OUT.h5 [--group /exact] [--dequant exact|bf16]
        [--ids "3,17,42;9,8,7"] [--dtype float32] [--device cpu] [--threads 2] [--append]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors import safe_open

import compressed_tensors
import transformers
from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.compressors.pack_quantized.helpers import unpack_from_int32
from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
from compressed_tensors.quantization.lifecycle.forward import dequantize
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

DEFAULT_IDS = [[3, 17, 42, 99, 7, 128, 200, 5], [11, 250, 64, 1, 77, 190, 33, 160]]


def text_section(config: dict) -> tuple[dict, str]:
    """The language-model config and the tensor-name prefix of the language model."""
    if isinstance(config.get("text_config"), dict):
        return config["text_config"], "language_model."
    return config, ""


def quantization_config(config: dict, text: dict) -> dict | None:
    return text.get("quantization_config") or config.get("quantization_config")


def deepseek_config(text: dict, layers_limit: int | None) -> DeepseekV3Config:
    rope = text.get("rope_parameters") or text.get("rope_scaling") or None
    params = None
    if rope:
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        params = {k: v for k, v in rope.items() if k not in ("type",)}
        params["rope_type"] = rope_type
        params["rope_theta"] = text.get("rope_theta", params.get("rope_theta", 10000.0))
    else:
        params = {"rope_type": "default", "rope_theta": text.get("rope_theta", 10000.0)}
    keys = ["vocab_size", "hidden_size", "intermediate_size", "moe_intermediate_size", "num_hidden_layers",
            "num_attention_heads", "num_key_value_heads", "n_shared_experts", "n_routed_experts",
            "routed_scaling_factor", "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "v_head_dim",
            "qk_nope_head_dim", "n_group", "topk_group", "num_experts_per_tok", "first_k_dense_replace",
            "norm_topk_prob", "hidden_act", "max_position_embeddings", "rms_norm_eps", "attention_bias",
            "rope_interleave"]
    kw = {k: text[k] for k in keys if k in text}
    if layers_limit is not None:
        kw["num_hidden_layers"] = min(kw["num_hidden_layers"], layers_limit)
    return DeepseekV3Config(**kw, rope_parameters=params, num_nextn_predict_layers=0,
                            tie_word_embeddings=bool(text.get("tie_word_embeddings", False)))


def read_tensors(model_dir: Path, prefix: str) -> dict:
    index = model_dir / "model.safetensors.index.json"
    shards = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() \
        else ["model.safetensors"]
    out = {}
    for shard in shards:
        with safe_open(str(model_dir / shard), framework="pt") as f:
            for name in f.keys():
                if name.startswith(prefix + "model.") or name == prefix + "lm_head.weight":
                    out[name[len(prefix):]] = f.get_tensor(name)
    return out


def int4_args(qcfg: dict) -> tuple[QuantizationArgs, QuantizationScheme]:
    groups = qcfg["config_groups"]
    assert len(groups) == 1, "one config group expected"
    group = next(iter(groups.values()))
    args = QuantizationArgs(**group["weights"])
    return args, QuantizationScheme(targets=group["targets"], weights=args)


def dequantize_modules(sd: dict, qcfg: dict | None, mode: str) -> tuple[dict, int]:
    """Replaces every pack-quantized (and FP8 block) module by a plain `.weight`."""
    count = 0
    out = {}
    modules = {n[: -len(".weight_packed")] for n in sd if n.endswith(".weight_packed")}
    if modules:
        assert qcfg is not None and qcfg.get("format") == "pack-quantized", "packed tensors without a pack-quantized config"
        args, scheme = int4_args(qcfg)
    for m in sorted(modules):
        packed, scale, shape = sd[m + ".weight_packed"], sd[m + ".weight_scale"], sd[m + ".weight_shape"]
        if mode == "bf16":
            w = PackedQuantizationCompressor.decompress(
                {"weight_packed": packed, "weight_scale": scale, "weight_shape": shape}, scheme)["weight"]
        else:
            q = unpack_from_int32(packed, args.num_bits, torch.Size(shape.tolist()))
            w = dequantize(q, scale.float(), None, args, dtype=torch.float32)
        out[m + ".weight"] = w
        count += 1
    fp8 = {n[: -len(".weight_scale_inv")] for n in sd if n.endswith(".weight_scale_inv")}
    for m in sorted(fp8):
        w, s = sd[m + ".weight"].float(), sd[m + ".weight_scale_inv"].float()
        rows, cols = w.shape
        s = s.repeat_interleave(128, 0)[:rows].repeat_interleave(128, 1)[:, :cols]
        out[m + ".weight"] = w * s
        count += 1
    skip = {m + suffix for m in modules for suffix in (".weight_packed", ".weight_scale", ".weight_shape")}
    skip |= {m + ".weight_scale_inv" for m in fp8}
    for n, t in sd.items():
        if n not in skip and n not in out:
            out[n] = t
    return out, count


def fuse_experts(sd: dict, cfg: DeepseekV3Config) -> dict:
    out = {k: v for k, v in sd.items() if ".mlp.experts." not in k}
    for layer in range(cfg.first_k_dense_replace, cfg.num_hidden_layers):
        pre = f"model.layers.{layer}.mlp.experts"
        gate_up, down = [], []
        for e in range(cfg.n_routed_experts):
            gate_up.append(torch.cat([sd[f"{pre}.{e}.gate_proj.weight"], sd[f"{pre}.{e}.up_proj.weight"]], 0))
            down.append(sd[f"{pre}.{e}.down_proj.weight"])
        out[f"{pre}.gate_up_proj"] = torch.stack(gate_up)
        out[f"{pre}.down_proj"] = torch.stack(down)
    return out


def build_model(model_dir: Path, dequant: str, dtype: torch.dtype, device: str, layers_limit: int | None):
    config = json.loads((model_dir / "config.json").read_text())
    text, prefix = text_section(config)
    cfg = deepseek_config(text, layers_limit)
    sd = read_tensors(model_dir, prefix)
    qcfg = quantization_config(config, text)
    sd, n_quantized = dequantize_modules(sd, qcfg, dequant)
    sd = {k: v for k, v in sd.items() if not (k.startswith("model.layers.") and int(k.split(".")[2]) >= cfg.num_hidden_layers)}
    sd = fuse_experts(sd, cfg)
    with torch.device(device):
        model = DeepseekV3ForCausalLM(cfg)
    model = model.to(dtype).eval()
    sd = {k: v.to(device=device, dtype=dtype) for k, v in sd.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "rotary_emb" not in m]
    if missing or unexpected:
        raise SystemExit(f"state dict does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model, cfg, config, n_quantized


def capture(model, cfg, ids: torch.Tensor) -> tuple[dict, float]:
    """Runs the model once with hooks; returns {dataset name: numpy array} and the smallest routing margin."""
    B, T = ids.shape
    dumps: dict = {}
    margins = []
    hooks = []

    def put(name, t):
        dumps[name] = t.detach().float().cpu().numpy().reshape(B, T, -1)

    for i, layer in enumerate(model.model.layers):
        def pre(mod, args, kwargs, i=i):
            h = args[0] if args else kwargs["hidden_states"]
            put(f"layers/{i}/layer_in", h)
        hooks.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        hooks.append(layer.register_forward_hook(
            lambda m, a, o, i=i: put(f"layers/{i}/layer_out", o[0] if isinstance(o, tuple) else o)))
        hooks.append(layer.self_attn.register_forward_hook(lambda m, a, o, i=i: put(f"layers/{i}/attn_out", o[0])))
        hooks.append(layer.mlp.register_forward_hook(lambda m, a, o, i=i: put(f"layers/{i}/mlp_out", o)))
        gate = getattr(layer.mlp, "gate", None)
        if gate is not None:
            def route(m, a, o, i=i):
                router_logits, _, idx = o
                dumps[f"layers/{i}/topk_indices"] = idx.detach().cpu().numpy().astype(np.int32).reshape(B, T, -1)
                # Margin: k-th vs (k+1)-th biased score (what decides the expert set).
                s = router_logits.float().sigmoid() + m.e_score_correction_bias.float()
                top = torch.topk(s, k=min(cfg.num_experts_per_tok + 1, s.shape[-1]), dim=-1).values
                if top.shape[-1] > cfg.num_experts_per_tok:
                    margins.append(float((top[:, -2] - top[:, -1]).min()))
            hooks.append(gate.register_forward_hook(route))
    hooks.append(model.model.norm.register_forward_hook(lambda m, a, o: put("final_norm_out", o)))
    with torch.no_grad():
        logits = model(ids.to(next(model.parameters()).device)).logits
    for h in hooks:
        h.remove()
    dumps["logits"] = logits.detach().float().cpu().numpy()
    return dumps, (min(margins) if margins else math.inf)


def write_dump(out: Path, group: str, ids: np.ndarray, dumps: dict, attrs: dict, append: bool) -> None:
    mode = "a" if append else "w"
    with h5py.File(out, mode, libver="earliest", track_order=False) as f:
        g = f if group in ("", "/") else f.require_group(group.strip("/"))
        for name in list(g.keys()):
            del g[name]
        g.create_dataset("input_ids", data=ids.astype(np.int64), track_times=False)
        for name in sorted(dumps):
            g.create_dataset(name, data=dumps[name], track_times=False)
        for k, v in sorted(attrs.items()):
            g.attrs[k] = np.bytes_(v.encode()) if isinstance(v, str) else v  # fixed-length ASCII strings


def parse_ids(text: str | None) -> list[list[int]]:
    if not text:
        return DEFAULT_IDS
    rows = [[int(x) for x in row.split(",") if x.strip()] for row in text.split(";")]
    assert rows and all(len(r) == len(rows[0]) and r for r in rows), "--ids: equal-length rows needed"
    return rows


def make_reference(model_dir: Path, out: Path, group: str = "", dequant: str = "exact", ids=None,
                   dtype: str = "float32", device: str = "cpu", append: bool = False,
                   layers_limit: int | None = None, quiet: bool = False, keep=None) -> dict:
    """keep: a predicate on dataset names (input_ids is always written); None keeps everything."""
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    model, cfg, config, n_quantized = build_model(model_dir, dequant, torch_dtype, device, layers_limit)
    rows = parse_ids(ids) if isinstance(ids, (str, type(None))) else ids
    ids_t = torch.tensor(rows, dtype=torch.long)
    assert int(ids_t.max()) < cfg.vocab_size, "token id out of the vocabulary"
    dumps, margin = capture(model, cfg, ids_t)
    if layers_limit is not None and layers_limit < text_section(config)[0]["num_hidden_layers"]:
        dumps = {k: v for k, v in dumps.items() if k.startswith("layers/")}  # a truncated model's logits mean nothing
    if keep is not None:
        dumps = {k: v for k, v in dumps.items() if keep(k)}
    attrs = {
        "dequant": dequant if n_quantized else "none",
        "dtype": dtype,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "compressed_tensors": compressed_tensors.__version__,
        "model_type": config.get("model_type", ""),
        "min_routing_margin": margin if math.isfinite(margin) else -1.0,
    }
    write_dump(out, group, ids_t.numpy(), dumps, attrs, append)
    if not quiet:
        print(f"{out}:{group or '/'}: {len(dumps)} datasets, {n_quantized} quantized modules dequantized ({dequant}), "
              f"smallest routing margin {margin:.3g}")
    return dumps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--group", default="", help="HDF5 group to write under (default: the root)")
    ap.add_argument("--dequant", choices=["exact", "bf16"], default="exact")
    ap.add_argument("--ids", default=None, help='token ids, rows separated by ";" (default: two rows of 8)')
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--append", action="store_true", help="add the group to an existing file")
    ap.add_argument("--layers-limit", type=int, default=None, help="dump only the first N decoder layers")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    transformers.logging.set_verbosity_error()
    make_reference(a.model_dir, a.out, a.group, a.dequant, a.ids, a.dtype, a.device, a.append, a.layers_limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
