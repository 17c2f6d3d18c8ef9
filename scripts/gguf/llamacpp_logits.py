#!/usr/bin/env python3
"""Load a GGUF written by `k2pack convert --to gguf` with llama.cpp and compare its logits with a reference dump.

Not run in CI (it needs llama-cpp-python, which compiles llama.cpp). Pinned: llama-cpp-python==0.3.36,
gguf==0.19.0, numpy, h5py.

    python scripts/gguf/llamacpp_logits.py OUT.gguf Fixtures/references/k2-thinking-tiny.h5:/exact

For each row of the reference's `input_ids` the ids are evaluated by llama.cpp (`Llama(..., logits_all=True)`,
`eval(ids)`, `scores`) and compared with the reference's `logits`: mean KL(reference || llama.cpp) per position
and the share of positions with the same top-1. llama.cpp rounds activations to 8 bits in quantized products
and keeps an F16 KV cache, so expect small, not zero, differences; a wrong key or layout shows as garbage.

A file without tokenizer keys (written with --no-tokenizer, or before the tokenizer metadata exists) cannot be
loaded by llama.cpp; the script then writes a copy with a stand-in vocabulary (`gpt2`, pre `kimi-k2`, one token per
byte, the rest unused, no merges) next to it. The ids are given directly, so the stand-in does not change the
logits. Every other key and every tensor is copied unchanged (checked).
"""

from __future__ import annotations

import sys
from pathlib import Path

import gguf
import h5py
import numpy as np

import llama_cpp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from gpt2_bytes import bytes_to_unicode  # noqa: E402


def byte_tokens() -> list[str]:
    """The string llama.cpp expects for each single-byte token (GPT-2's byte-to-unicode map)."""
    table = bytes_to_unicode()
    return [table[b] for b in range(256)]


def with_stand_in_vocabulary(path: Path) -> Path:
    reader = gguf.GGUFReader(str(path))
    if "tokenizer.ggml.model" in reader.fields:
        return path
    out = path.with_name(path.stem + ".stand-in-vocab.gguf")
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(str(out), arch)
    scalar = {
        gguf.GGUFValueType.STRING: writer.add_string, gguf.GGUFValueType.UINT32: writer.add_uint32,
        gguf.GGUFValueType.INT32: writer.add_int32, gguf.GGUFValueType.FLOAT32: writer.add_float32,
        gguf.GGUFValueType.BOOL: writer.add_bool, gguf.GGUFValueType.UINT16: writer.add_uint16,
    }
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.alignment"):
            continue
        scalar[field.types[0]](key, field.contents())
    vocab = int(reader.fields[f"{arch}.vocab_size"].contents())
    tokens = byte_tokens()[:vocab] + [f"[PAD{i}]" for i in range(256, vocab)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("kimi-k2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * min(vocab, 256) + [5] * max(0, vocab - 256))
    writer.add_token_merges([])
    for t in reader.tensors:
        writer.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    copy = gguf.GGUFReader(str(out))
    for a, b in zip(reader.tensors, copy.tensors):
        assert a.name == b.name and a.tensor_type == b.tensor_type and list(a.shape) == list(b.shape)
        assert np.array_equal(np.asarray(a.data).view(np.uint8), np.asarray(b.data).view(np.uint8)), a.name
    return out


def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x - x.max(axis=-1, keepdims=True)
    return m - np.log(np.exp(m).sum(axis=-1, keepdims=True))


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 64
    path = with_stand_in_vocabulary(Path(sys.argv[1]))
    ref_path, _, group = sys.argv[2].partition(":")
    with h5py.File(ref_path, "r") as f:
        g = f[group or "/"]
        ids = np.array(g["input_ids"])
        reference = np.array(g["logits"]).astype(np.float64)
    model = llama_cpp.Llama(str(path), n_ctx=max(64, ids.shape[-1]), n_threads=2, logits_all=True, verbose=False,
                            yarn_beta_fast=-1, yarn_beta_slow=-1)
    klds, top1 = [], []
    for row in range(ids.shape[0]):
        model.reset()
        model.eval([int(i) for i in ids[row]])
        scores = np.array(model.scores[: ids.shape[1]], dtype=np.float64)
        a, b = log_softmax(reference[row]), log_softmax(scores)
        klds.append((np.exp(a) * (a - b)).sum(axis=-1))
        top1.append(a.argmax(axis=-1) == b.argmax(axis=-1))
    kld = float(np.concatenate(klds).mean())
    same = float(np.concatenate(top1).mean())
    print(f"{sys.argv[1]}: {ids.size} positions, mean KLD {kld:.3g}, same top-1 {same:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
