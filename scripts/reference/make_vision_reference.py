#!/usr/bin/env python3
"""Write a k2pack vision reference dump (HDF5) of a Kimi K2.5 checkpoint's MoonViT tower, patch merger and
projector, made by transformers 5.23's own Kimi_K25ForConditionalGeneration.

The layout is documented in docs/REFERENCE-DUMPS.md ("Vision dumps"). Under each group:
    pixel_values              [N, 3, P, P] float32  (normalized patches, entry by entry, frame-major, row-major)
    grid_thws                 [n, 3] int64          ((t, h, w) in patches per entry)
    patch_embed_out           [N, D] float32        (patch conv + bicubic position table + temporal sinusoid)
    layers/{i}/attn_out       [N, D] float32        (attention output after wo, before the residual add)
    layers/{i}/mlp_out        [N, D] float32        (MLP output, before the residual add)
    layers/{i}/layer_out      [N, D] float32        (encoder block output)
    final_layernorm_out       [N, D] float32
    merger_out                [M, kh*kw, D] float32 (2x2 merge with the mean over a chunk's frames)
    projector_out             [M, text_hidden] float32
and attributes dtype, transformers, torch, model_type, entry ("get_image_features" or "vision_tower+mm_projector").

How the model is built:
  * config.json is read raw and its vision section translated into transformers' own names (vt_hidden_size ->
    hidden_size, init_pos_emb_height -> pos_emb_height, mm_hidden_size -> projection_hidden_size, ...): an
    untranslated toy config is silently replaced by the real K2.5 sizes (shared/reference/moonvit.md §1).
  * the vision_tower.* and mm_projector.* tensors are copied, upcast to float32, into a temporary folder and
    loaded with Kimi_K25ForConditionalGeneration.from_pretrained, so transformers' own conversion mapping
    renames them, splits wqkv and applies its RoPE permutation to q and k. Loading must report no missing or
    unexpected vision weight. The language model is left at random: it is not used.
  * forward hooks on the patch embedding, every encoder layer, its attention and MLP, and the final norm record
    the activations; the merger and projector outputs are the pooler output and the projector's output.
  * images go through the real entry point, get_image_features. transformers 5.23's get_video_features is
    BROKEN for any chunk of more than one frame: it splits the projector output into t*h*w/4 tokens per chunk
    (ignoring the temporal mean, the right count is h*w/4) and raises "split_with_sizes expects split_sizes to
    sum exactly to ...". The video group therefore calls model.vision_tower and model.mm_projector directly,
    and this script checks that get_video_features still fails (so the workaround is dropped once it is fixed).

Environment: the pinned one of scripts/fixtures/requirements.txt (transformers 5.23.0, torch 2.13.0+cpu, h5py
3.16.0); make_fixtures.py calls this script for Fixtures/references/k25-tiny-vision.h5 (byte-identical on rerun).

Usage:
    python scripts/reference/make_vision_reference.py MODEL_DIR OUT.h5 [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import Kimi_K25Config, Kimi_K25ForConditionalGeneration

# The fixture's inputs: (group, grids, seed). Images: one grid smaller than the tiny 4x4 position table and one
# larger (and not square); video: one chunk of 4 frames (the temporal table's size).
GROUPS = [
    ("/images", [(1, 2, 2), (1, 6, 8)], 7001),
    ("/video", [(4, 2, 4)], 7002),
]

VISION_NAMES = {
    "vt_hidden_size": "hidden_size",
    "vt_num_hidden_layers": "num_hidden_layers",
    "vt_num_attention_heads": "num_attention_heads",
    "vt_intermediate_size": "intermediate_size",
    "init_pos_emb_height": "pos_emb_height",
    "init_pos_emb_width": "pos_emb_width",
    "init_pos_emb_time": "pos_emb_time",
    "patch_size": "patch_size",
    "merge_kernel_size": "merge_kernel_size",
}


def translated_config(raw: dict) -> Kimi_K25Config:
    v = raw["vision_config"]
    vision = {ours: v[theirs] for theirs, ours in VISION_NAMES.items()}
    if "hidden_act" in v:
        vision["hidden_act"] = v["hidden_act"]
    text = dict(raw["text_config"])
    text.pop("quantization_config", None)  # the language model is not used (and not loaded)
    cfg = Kimi_K25Config(
        text_config=text,
        vision_config=vision,
        projection_hidden_size=v["mm_hidden_size"],
        projection_layer_norm_eps=v.get("projector_ln_eps", 1e-5),
        tie_word_embeddings=raw.get("tie_word_embeddings", False),
    )
    # The translation must have taken: no silently substituted default.
    vc = cfg.vision_config
    for theirs, ours in VISION_NAMES.items():
        got = getattr(vc, ours)
        want = v[theirs]
        assert list(got) == list(want) if isinstance(want, list) else got == want, (ours, got, want)
    assert cfg.text_config.hidden_size == v["text_hidden_size"]
    return cfg


def vision_tensors(model_dir: Path) -> dict:
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())["weight_map"]
    out = {}
    for name, shard in sorted(index.items()):
        if name.startswith("vision_tower.") or name.startswith("mm_projector."):
            with safe_open(model_dir / shard, "pt") as f:
                out[name] = f.get_tensor(name).to(torch.float32)
    return out


def load_model(model_dir: Path, tensors: dict | None = None):
    raw = json.loads((model_dir / "config.json").read_text())
    cfg = translated_config(raw)
    tensors = vision_tensors(model_dir) if tensors is None else tensors
    with tempfile.TemporaryDirectory() as tmp:
        cfg.save_pretrained(tmp)
        save_file(tensors, str(Path(tmp) / "model.safetensors"), metadata={"format": "pt"})
        model, info = Kimi_K25ForConditionalGeneration.from_pretrained(
            tmp, config=cfg, dtype=torch.float32, output_loading_info=True)
    vision_missing = [k for k in info["missing_keys"] if "vision_tower" in k or "mm_projector" in k]
    assert not vision_missing, f"vision weights left at random: {vision_missing}"
    assert not info["unexpected_keys"], f"unexpected weights: {info['unexpected_keys']}"
    assert not info.get("mismatched_keys"), f"mismatched weights: {info['mismatched_keys']}"
    model.eval()
    check_conversion(model.model, tensors, cfg)
    return model, cfg, raw


def check_conversion(m, tensors: dict, cfg) -> None:
    """transformers' q_proj row s*hd/2 + j of each head is the stored wqkv row 2j + s (moonvit.md §2)."""
    vc = cfg.vision_config
    d, heads = vc.hidden_size, vc.num_attention_heads
    hd = d // heads
    perm = torch.tensor([2 * j + s for s in range(2) for j in range(hd // 2)])
    for b in range(vc.num_hidden_layers):
        w = tensors[f"vision_tower.encoder.blocks.{b}.wqkv.weight"]
        bias = tensors[f"vision_tower.encoder.blocks.{b}.wqkv.bias"]
        attn = m.vision_tower.layers[b].attn
        for part, proj in enumerate((attn.q_proj, attn.k_proj, attn.v_proj)):
            rows = w[part * d:(part + 1) * d].view(heads, hd, d)
            rb = bias[part * d:(part + 1) * d].view(heads, hd)
            if part < 2:
                rows, rb = rows[:, perm], rb[:, perm]
            assert torch.equal(proj.weight.detach(), rows.reshape(d, d)), (b, part)
            assert torch.equal(proj.bias.detach(), rb.reshape(d)), (b, part)


def pixels_for(grids, patch: int, seed: int) -> torch.Tensor:
    n = sum(t * h * w for t, h, w in grids)
    g = torch.Generator().manual_seed(seed)
    # Normalized pixels lie in [-1, 1] (the processor maps 0..255 to (x - 127.5) / 127.5).
    return (torch.rand((n, 3, patch, patch), generator=g) * 2 - 1).to(torch.float32)


def capture(model, cfg, pixels: torch.Tensor, grid: torch.Tensor, video: bool) -> dict:
    m = model.model
    tower = m.vision_tower
    dumps, handles = {}, []

    def put(name):
        def hook(mod, args, out):
            t = out[0] if isinstance(out, tuple) else out
            dumps[name] = t.detach().to(torch.float32).numpy().copy()
        return hook

    handles.append(tower.patch_embed.register_forward_hook(put("patch_embed_out")))
    for i, layer in enumerate(tower.layers):
        handles.append(layer.attn.register_forward_hook(put(f"layers/{i}/attn_out")))
        handles.append(layer.mlp.register_forward_hook(put(f"layers/{i}/mlp_out")))
        handles.append(layer.register_forward_hook(put(f"layers/{i}/layer_out")))
    handles.append(tower.final_layernorm.register_forward_hook(put("final_layernorm_out")))
    with torch.no_grad():
        if video:
            out = tower(pixels, grid_thw=grid)
            merged = out.pooler_output
            projected = m.mm_projector(merged).squeeze(1)
        else:
            feats = m.get_image_features(pixels, image_grid_thw=grid)
            # last_hidden_state is the final norm's output; pooler_output was replaced by the per-image split.
            projected = torch.cat(list(feats.pooler_output), dim=0)
            merged = tower(pixels, grid_thw=grid).pooler_output
    for h in handles:
        h.remove()
    kh, kw = cfg.vision_config.merge_kernel_size
    want = sum((h // kh) * (w // kw) for _, h, w in grid.tolist())
    assert merged.shape[0] == want and projected.shape[0] == want, (merged.shape, projected.shape, want)
    dumps["merger_out"] = merged.detach().numpy().copy()
    dumps["projector_out"] = projected.detach().numpy().copy()
    return dumps


def check_video_entry_still_broken(model, pixels, grid) -> str:
    try:
        model.model.get_video_features(pixels, video_grid_thw=grid)
    except RuntimeError as e:
        return str(e).splitlines()[0]
    raise SystemExit("transformers' get_video_features now accepts a multi-frame chunk: "
                     "drop the workaround in make_vision_reference.py and compare its output")


def write_group(f: h5py.File, group: str, pixels, grid, dumps: dict, attrs: dict) -> None:
    g = f.require_group(group)
    g.create_dataset("pixel_values", data=pixels.numpy(), track_times=False)
    g.create_dataset("grid_thws", data=grid.numpy().astype(np.int64), track_times=False)
    for name in sorted(dumps):
        g.create_dataset(name, data=dumps[name].astype(np.float32), track_times=False)
    for k, v in sorted(attrs.items()):
        g.attrs[k] = np.bytes_(v.encode())  # fixed-length ASCII strings


def make_vision_reference(model_dir: Path, out: Path, quiet: bool = False) -> dict:
    model, cfg, raw = load_model(model_dir)
    patch = cfg.vision_config.patch_size
    results = {}
    out.unlink(missing_ok=True)
    with h5py.File(out, "w", track_order=True) as f:
        for group, grids, seed in GROUPS:
            grid = torch.tensor(grids, dtype=torch.int64)
            pixels = pixels_for(grids, patch, seed)
            video = any(t > 1 for t, _, _ in grids)
            dumps = capture(model, cfg, pixels, grid, video)
            attrs = {
                "dtype": "float32",
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "model_type": raw.get("model_type", ""),
                "entry": "vision_tower+mm_projector" if video else "get_image_features",
            }
            if video:
                reason = check_video_entry_still_broken(model, pixels, grid)
                attrs["video_entry_defect"] = reason
                if not quiet:
                    print(f"  {group}: get_video_features fails as documented ({reason}); tower + projector called directly")
            write_group(f, group, pixels, grid, dumps, attrs)
            results[group] = dumps
            if not quiet:
                big = max(float(np.abs(v).max()) for v in dumps.values())
                print(f"  {out.name}:{group}: grids {grids}, {len(dumps)} datasets, max |activation| {big:.3f}")
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    make_vision_reference(args.model_dir, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
