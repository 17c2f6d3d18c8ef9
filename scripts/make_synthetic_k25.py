#!/usr/bin/env python3
"""Write a full-scale synthetic Kimi K2.5 checkpoint: real config.json, real index, real shard layout.

Every tensor has the real name, shape and dtype, in the real shard (shard 1 = layer 0, shards 2..61 =
layers 1..60, 62 = embed_tokens / norm / lm_head, 63 = mm_projector, 64 = vision tower), with the
real file names (`model-00001-of-000064.safetensors`, 6-digit total, as in the published repo).
Headers are laid out exactly as safetensors' own writer does (tensors ordered by dtype, then name;
compact JSON padded with spaces to 8 bytes; `__metadata__ {"format": "pt"}`). Tensor data is left
as sparse holes (the file is `truncate`d to its final length), so a full 61-layer checkpoint of
595,148,192,736 tensor bytes costs about 30 MB of real disk. `--fill` writes real random data for
chosen layers instead (streamed in chunks; needs numpy). Holes read back as zeros: in an unfilled
layer every weight_shape reads [0, 0] and every weight_scale 0.0, so value checks need --fill.

Standard library only (numpy only for --fill). Examples:
    python3 scripts/make_synthetic_k25.py /tmp/k25-synth                      # full size, all holes
    python3 scripts/make_synthetic_k25.py /tmp/k25-3 --num-layers 3 --fill 1  # ~10 GB of real data
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
from pathlib import Path

# ---- the real Kimi K2.5 dimensions (shared/reference/kimi-k25-checkpoint.md §1-3) ---------------

HIDDEN = 7168
NUM_LAYERS = 61
FIRST_DENSE = 1
HEADS = 64
Q_LORA = 1536
KV_LORA = 512
QK_NOPE = 128
QK_ROPE = 64
V_HEAD = 128
EXPERTS = 384
TOP_K = 8
SHARED = 1
MOE_INTER = 2048
INTER = 18432
VOCAB = 163840
GROUP = 32

VT_HIDDEN = 1152
VT_INTER = 4304
VT_LAYERS = 27
VT_HEADS = 16
PATCH = 14
POS_H = POS_W = 64
POS_T = 4
MERGE = (2, 2)
MM_HIDDEN = 1152

REFERENCE_TENSORS = 208_550
REFERENCE_BYTES = 595_148_192_736
REFERENCE_EXPERT_BYTES = 570_761_441_280

WIDTH = {"F32": 4, "I32": 4, "BF16": 2}
# safetensors' writer orders tensors by dtype (descending enum: ... F32, I32, BF16 ...), then by name.
DTYPE_RANK = {"I64": 0, "F64": 1, "F32": 2, "I32": 3, "BF16": 4}

TEXT = "language_model.model."


# ---- config ------------------------------------------------------------------------------------

QUANTIZATION_CONFIG = {
    "config_groups": {
        "group_0": {
            "input_activations": None,
            "output_activations": None,
            "targets": ["Linear"],
            "weights": {
                "actorder": None,
                "block_structure": None,
                "dynamic": False,
                "group_size": GROUP,
                "num_bits": 4,
                "observer": "minmax",
                "observer_kwargs": {},
                "strategy": "group",
                "symmetric": True,
                "type": "int",
            },
        }
    },
    "format": "pack-quantized",
    "ignore": ["lm_head", "re:.*self_attn.*", "re:.*shared_experts.*", "re:.*mlp\\.(gate|up|gate_up|down)_proj.*"],
    "kv_cache_scheme": None,
    "quant_method": "compressed-tensors",
    "quantization_status": "compressed",
}


def make_config(num_layers: int, vision: bool) -> dict:
    text = {
        "architectures": ["DeepseekV3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "aux_loss_alpha": 0.001,
        "bos_token_id": 163584,
        "eos_token_id": 163585,
        "ep_size": 1,
        "first_k_dense_replace": FIRST_DENSE,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "kv_lora_rank": KV_LORA,
        "max_position_embeddings": 262144,
        "model_type": "kimi_k2",
        "moe_intermediate_size": MOE_INTER,
        "moe_layer_freq": 1,
        "n_group": 1,
        "n_routed_experts": EXPERTS,
        "n_shared_experts": SHARED,
        "norm_topk_prob": True,
        "num_attention_heads": HEADS,
        "num_experts_per_tok": TOP_K,
        "num_hidden_layers": num_layers,
        "num_key_value_heads": HEADS,
        "num_nextn_predict_layers": 0,
        "pad_token_id": 163839,
        "pretraining_tp": 1,
        "q_lora_rank": Q_LORA,
        "qk_nope_head_dim": QK_NOPE,
        "qk_rope_head_dim": QK_ROPE,
        "quantization_config": QUANTIZATION_CONFIG,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "factor": 64.0,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096,
            "type": "yarn",
        },
        "rope_theta": 50000.0,
        "routed_scaling_factor": 2.827,
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": 1,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "v_head_dim": V_HEAD,
        "vocab_size": VOCAB,
    }
    cfg = {
        "architectures": ["KimiK25ForConditionalGeneration"],
        "bos_token_id": 163584,
        "dtype": "bfloat16",
        "eos_token_id": 163585,
        "ignore_index": -100,
        "media_placeholder_token_id": 163605,
        "model_type": "kimi_k25",
        "pad_token_id": 163839,
        "text_config": text,
        "tie_word_embeddings": False,
        "use_unified_vision_chunk": True,
        "video_placeholder": "<|kimi_k25_video_placeholder|>",
    }
    if vision:
        cfg["vision_config"] = {
            "init_pos_emb_height": POS_H,
            "init_pos_emb_time": POS_T,
            "init_pos_emb_width": POS_W,
            "merge_kernel_size": list(MERGE),
            "merge_type": "sd2_tpool",
            "mm_hidden_size": MM_HIDDEN,
            "mm_projector_type": "patchmerger",
            "patch_size": PATCH,
            "pos_emb_type": "divided_fixed",
            "projector_hidden_act": "gelu",
            "projector_ln_eps": 1e-05,
            "text_hidden_size": HIDDEN,
            "video_attn_type": "spatial_temporal",
            "vt_hidden_size": VT_HIDDEN,
            "vt_intermediate_size": VT_INTER,
            "vt_num_attention_heads": VT_HEADS,
            "vt_num_hidden_layers": VT_LAYERS,
        }
    return cfg


# ---- tensors -----------------------------------------------------------------------------------
# A tensor is (name, dtype, shape, kind); kind tells --fill what data to write.

def layer_tensors(layer: int) -> list:
    p = f"{TEXT}layers.{layer}."
    t = [
        (p + "input_layernorm.weight", "BF16", [HIDDEN], "norm"),
        (p + "post_attention_layernorm.weight", "BF16", [HIDDEN], "norm"),
        (p + "self_attn.q_a_proj.weight", "BF16", [Q_LORA, HIDDEN], "w"),
        (p + "self_attn.q_a_layernorm.weight", "BF16", [Q_LORA], "norm"),
        (p + "self_attn.q_b_proj.weight", "BF16", [HEADS * (QK_NOPE + QK_ROPE), Q_LORA], "w"),
        (p + "self_attn.kv_a_proj_with_mqa.weight", "BF16", [KV_LORA + QK_ROPE, HIDDEN], "w"),
        (p + "self_attn.kv_a_layernorm.weight", "BF16", [KV_LORA], "norm"),
        (p + "self_attn.kv_b_proj.weight", "BF16", [HEADS * (QK_NOPE + V_HEAD), KV_LORA], "w"),
        (p + "self_attn.o_proj.weight", "BF16", [HIDDEN, HEADS * V_HEAD], "w"),
    ]
    if layer < FIRST_DENSE:
        t += [
            (p + "mlp.gate_proj.weight", "BF16", [INTER, HIDDEN], "w"),
            (p + "mlp.up_proj.weight", "BF16", [INTER, HIDDEN], "w"),
            (p + "mlp.down_proj.weight", "BF16", [HIDDEN, INTER], "w"),
        ]
        return t
    t += [
        (p + "mlp.gate.weight", "BF16", [EXPERTS, HIDDEN], "w"),
        (p + "mlp.gate.e_score_correction_bias", "F32", [EXPERTS], "bias"),
        (p + "mlp.shared_experts.gate_proj.weight", "BF16", [MOE_INTER * SHARED, HIDDEN], "w"),
        (p + "mlp.shared_experts.up_proj.weight", "BF16", [MOE_INTER * SHARED, HIDDEN], "w"),
        (p + "mlp.shared_experts.down_proj.weight", "BF16", [HIDDEN, MOE_INTER * SHARED], "w"),
    ]
    for e in range(EXPERTS):
        for proj, out, inp in (("gate_proj", MOE_INTER, HIDDEN), ("up_proj", MOE_INTER, HIDDEN),
                               ("down_proj", HIDDEN, MOE_INTER)):
            q = f"{p}mlp.experts.{e}.{proj}."
            t += [
                (q + "weight_packed", "I32", [out, inp // 8], "packed"),
                (q + "weight_scale", "BF16", [out, inp // GROUP], "scale"),
                (q + "weight_shape", "I32", [2], ("shape", out, inp)),
            ]
    return t


def head_tensors() -> list:
    return [
        (TEXT + "embed_tokens.weight", "BF16", [VOCAB, HIDDEN], "w"),
        (TEXT + "norm.weight", "BF16", [HIDDEN], "norm"),
        ("language_model.lm_head.weight", "BF16", [VOCAB, HIDDEN], "w"),
    ]


def projector_tensors() -> list:
    mm = MM_HIDDEN * MERGE[0] * MERGE[1]
    return [
        ("mm_projector.pre_norm.weight", "BF16", [MM_HIDDEN], "norm"),
        ("mm_projector.pre_norm.bias", "BF16", [MM_HIDDEN], "b"),
        ("mm_projector.proj.0.weight", "BF16", [mm, mm], "w"),
        ("mm_projector.proj.0.bias", "BF16", [mm], "b"),
        ("mm_projector.proj.2.weight", "BF16", [HIDDEN, mm], "w"),
        ("mm_projector.proj.2.bias", "BF16", [HIDDEN], "b"),
    ]


def vision_tensors() -> list:
    v = "vision_tower."
    t = [
        (v + "patch_embed.proj.weight", "BF16", [VT_HIDDEN, 3, PATCH, PATCH], "w"),
        (v + "patch_embed.proj.bias", "BF16", [VT_HIDDEN], "b"),
        (v + "patch_embed.pos_emb.weight", "BF16", [POS_H, POS_W, VT_HIDDEN], "w"),
        (v + "encoder.final_layernorm.weight", "BF16", [VT_HIDDEN], "norm"),
        (v + "encoder.final_layernorm.bias", "BF16", [VT_HIDDEN], "b"),
    ]
    for b in range(VT_LAYERS):
        p = f"{v}encoder.blocks.{b}."
        t += [
            (p + "norm0.weight", "BF16", [VT_HIDDEN], "norm"),
            (p + "norm0.bias", "BF16", [VT_HIDDEN], "b"),
            (p + "norm1.weight", "BF16", [VT_HIDDEN], "norm"),
            (p + "norm1.bias", "BF16", [VT_HIDDEN], "b"),
            (p + "wqkv.weight", "BF16", [3 * VT_HIDDEN, VT_HIDDEN], "w"),
            (p + "wqkv.bias", "BF16", [3 * VT_HIDDEN], "b"),
            (p + "wo.weight", "BF16", [VT_HIDDEN, VT_HIDDEN], "w"),
            (p + "wo.bias", "BF16", [VT_HIDDEN], "b"),
            (p + "mlp.fc0.weight", "BF16", [VT_INTER, VT_HIDDEN], "w"),
            (p + "mlp.fc0.bias", "BF16", [VT_INTER], "b"),
            (p + "mlp.fc1.weight", "BF16", [VT_HIDDEN, VT_INTER], "w"),
            (p + "mlp.fc1.bias", "BF16", [VT_HIDDEN], "b"),
        ]
    return t


def nbytes(dtype: str, shape: list) -> int:
    n = WIDTH[dtype]
    for d in shape:
        n *= d
    return n


def shard_plan(num_layers: int, vision: bool) -> list:
    """[(tag, tensors)] in shard order; tag is a layer number or 'head' / 'projector' / 'vision'."""
    plan = [(layer, layer_tensors(layer)) for layer in range(num_layers)]
    plan.append(("head", head_tensors()))
    if vision:
        plan.append(("projector", projector_tensors()))
        plan.append(("vision", vision_tensors()))
    return plan


# ---- safetensors layout ------------------------------------------------------------------------

def layout(tensors: list):
    """Order and offsets exactly as safetensors.torch.save_file would produce; returns
    (header bytes incl. padding, [(entry, begin, end)], buffer length)."""
    ordered = sorted(tensors, key=lambda t: (DTYPE_RANK[t[1]], t[0]))
    parts = ['"__metadata__":{"format":"pt"}']
    placed = []
    off = 0
    for t in ordered:
        name, dtype, shape = t[0], t[1], t[2]
        end = off + nbytes(dtype, shape)
        parts.append(json.dumps(name) + ':{"dtype":"' + dtype + '","shape":['
                     + ",".join(str(d) for d in shape) + '],"data_offsets":[' + f"{off},{end}" + "]}")
        placed.append((t, off, end))
        off = end
    header = ("{" + ",".join(parts) + "}").encode("utf-8")
    header += b" " * (-len(header) % 8)
    return header, placed, off


# ---- random fill (numpy) -----------------------------------------------------------------------

CHUNK = 1 << 23  # elements per chunk: bounded memory (<= ~64 MB per step)


def fill_tensor(f, rng, np, entry) -> None:
    name, dtype, shape, kind = entry
    count = 1
    for d in shape:
        count *= d
    if isinstance(kind, tuple):  # weight_shape
        f.write(struct.pack("<2i", kind[1], kind[2]))
        return
    done = 0
    while done < count:
        n = min(CHUNK, count - done)
        if kind == "packed":  # any 32-bit word is 8 valid offset-binary nibbles
            f.write(rng.bytes(4 * n))
        elif kind == "bias":
            f.write((0.01 * rng.standard_normal(n, dtype=np.float32)).astype("<f4").tobytes())
        else:
            if kind == "scale":
                x = rng.uniform(1e-3, 2e-2, n).astype(np.float32)
            elif kind == "norm":
                x = 1.0 + 0.05 * rng.standard_normal(n, dtype=np.float32)
            elif kind == "b":
                x = 0.01 * rng.standard_normal(n, dtype=np.float32)
            else:
                x = 0.02 * rng.standard_normal(n, dtype=np.float32)
            u = x.astype(np.float32).view(np.uint32)
            u = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
            f.write(u.astype("<u2").tobytes())
        done += n


# ---- main --------------------------------------------------------------------------------------

def parse_fill(value: str, num_layers: int, vision: bool):
    """Returns the set of shard tags to fill."""
    if value == "none":
        return set()
    if value == "moe":
        return set(range(FIRST_DENSE, num_layers))
    if value == "all":
        return set(range(num_layers)) | {"head"} | ({"projector", "vision"} if vision else set())
    layers = set()
    for part in value.split(","):
        part = part.strip()
        if part in ("head", "projector", "vision"):  # a non-layer shard by its tag
            if part != "head" and not vision:
                raise SystemExit(f"--fill {part}: the checkpoint has no vision tower (--no-vision)")
            layers.add(part)
        elif "-" in part:
            a, b = part.split("-")
            layers |= set(range(int(a), int(b) + 1))
        elif part:
            layers.add(int(part))
    bad = [x for x in layers if isinstance(x, int) and not 0 <= x < num_layers]
    if bad:
        raise SystemExit(f"--fill: layer(s) {sorted(bad)} outside 0..{num_layers - 1}")
    return layers


def shard_file(i: int, n: int, style: str) -> str:
    return f"model-{i:05d}-of-{n:06d}.safetensors" if style == "kimi" else f"model-{i:05d}-of-{n:05d}.safetensors"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output directory (created)")
    ap.add_argument("--num-layers", type=int, default=NUM_LAYERS,
                    help="text layers (default 61); shards = N + 3 (N + 1 with --no-vision)")
    ap.add_argument("--fill", default="none",
                    help="none | moe | all | a list of layers ('1,2,5', '1-3') and shards ('head', 'projector', 'vision'): write random data there")
    ap.add_argument("--no-vision", action="store_true", help="omit vision tower, projector and vision_config")
    ap.add_argument("--seed", type=int, default=0, help="seed for --fill data")
    ap.add_argument("--shard-names", choices=["kimi", "hf"], default="kimi",
                    help="kimi: model-00001-of-000064 (the real repo); hf: model-00001-of-00064 (save_pretrained)")
    ap.add_argument("--force", action="store_true", help="replace an existing checkpoint in OUT")
    args = ap.parse_args()

    if not 1 <= args.num_layers <= 999:
        raise SystemExit("--num-layers must be in 1..999")
    vision = not args.no_vision
    fill = parse_fill(args.fill, args.num_layers, vision)
    np = None
    if fill:
        try:
            import numpy as np  # noqa: F811
        except ImportError:
            raise SystemExit("--fill needs numpy")

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    existing = [p for p in out.iterdir() if p.name.endswith(".safetensors") or p.name in
                ("config.json", "model.safetensors.index.json")]
    if existing and not args.force:
        raise SystemExit(f"{out} already holds a checkpoint; pass --force to replace it")
    for p in existing:
        p.unlink()

    t0 = time.time()
    plan = shard_plan(args.num_layers, vision)
    n_shards = len(plan)
    weight_map = {}
    total_tensors = total_bytes = expert_bytes = params = disk_before = 0
    largest_header = 0
    for i, (tag, tensors) in enumerate(plan, start=1):
        fname = shard_file(i, n_shards, args.shard_names)
        header, placed, buf_len = layout(tensors)
        largest_header = max(largest_header, len(header))
        path = out / fname
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            if tag in fill:
                rng = np.random.default_rng([args.seed, i])
                for entry, begin, end in placed:
                    f.seek(8 + len(header) + begin)
                    fill_tensor(f, rng, np, entry)
                    assert f.tell() == 8 + len(header) + end, entry[0]
            f.truncate(8 + len(header) + buf_len)
        for entry, begin, end in placed:
            weight_map[entry[0]] = fname
            if ".mlp.experts." in entry[0]:
                expert_bytes += end - begin
            if entry[0].endswith("weight_packed"):
                params += entry[2][0] * entry[2][1] * 8
            elif not entry[0].endswith(("weight_scale", "weight_shape")):
                c = 1
                for d in entry[2]:
                    c *= d
                params += c
        total_tensors += len(placed)
        total_bytes += buf_len

    index = {"metadata": {"total_size": total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    (out / "config.json").write_text(json.dumps(make_config(args.num_layers, vision), indent=2, sort_keys=True) + "\n")
    elapsed = time.time() - t0

    # Re-read every header and check the container rules, as a reader would.
    apparent = disk = 0
    for i in range(1, n_shards + 1):
        path = out / shard_file(i, n_shards, args.shard_names)
        st = path.stat()
        apparent += st.st_size
        disk += st.st_blocks * 512
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            hdr = json.loads(f.read(n))
        assert hdr.pop("__metadata__") == {"format": "pt"}
        spans = sorted(v["data_offsets"] for v in hdr.values())
        pos = 0
        for b, e in spans:
            assert b == pos, path
            pos = e
        assert 8 + n + pos == st.st_size, path

    print(f"wrote {n_shards} shards + index + config to {out} in {elapsed:.1f} s "
          f"(filled: {sorted(fill, key=str) if fill else 'nothing'})")
    print(f"tensors: {total_tensors:,}   tensor bytes: {total_bytes:,} ({total_bytes / 2**30:.2f} GiB)   "
          f"routed-expert bytes: {expert_bytes:,}")
    print(f"logical parameters (INT4 counted as out x in): {params:,}")
    print(f"largest header: {largest_header:,} bytes   apparent size: {apparent:,}   on disk: {disk:,} bytes")
    if args.num_layers == NUM_LAYERS and vision:
        ok = (total_tensors, total_bytes, expert_bytes) == (REFERENCE_TENSORS, REFERENCE_BYTES, REFERENCE_EXPERT_BYTES)
        print("matches the reference totals (208,550 tensors, 595,148,192,736 bytes, "
              f"570,761,441,280 expert bytes): {'yes' if ok else 'NO'}")
        if not ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
