#!/usr/bin/env python3
"""The Python baseline for `k2pack tokenize`: tiktoken with Kimi's pattern, specials and encode rules, as
tokenization_kimi.TikTokenTokenizer.encode runs it, over a text file; prints the id count and tokens/s.

  tokenize_python.py MODEL_DIR TEXT_FILE            # encode (ids written to /dev/null-equivalent: discarded)
  tokenize_python.py --make-text TEXT_FILE MB       # write a deterministic multilingual text of about MB MiB

Uses scripts/fixtures/make_tokenizer.py's pattern and oracle (same venv: requirements-tokenizer.txt).
"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fixtures"))
import make_tokenizer as mt  # noqa: E402


def make_text(path, mib):
    rng = random.Random(5)
    parts, size = [], 0
    base = mt.training_text()
    lines = base.splitlines(keepends=True)
    while size < mib << 20:
        chunk = "".join(rng.choice(lines) for _ in range(200))
        parts.append(chunk)
        size += len(chunk.encode())
    with open(path, "w") as f:
        f.write("".join(parts))


def main():
    if sys.argv[1] == "--make-text":
        make_text(sys.argv[2], int(sys.argv[3]))
        return
    model, text_path = sys.argv[1], sys.argv[2]
    import base64
    import json
    ranks = {}
    for line in open(os.path.join(model, "tiktoken.model")):
        tok, rank = line.split()
        ranks[base64.b64decode(tok)] = int(rank)
    config = json.load(open(os.path.join(model, "tokenizer_config.json")))
    t0 = time.perf_counter()
    text = open(text_path, encoding="utf-8").read()
    oracle = mt.Oracle(ranks, config)
    ids = oracle.encode(text)
    dt = time.perf_counter() - t0
    print(f"{len(ids)} ids from {len(text.encode())} bytes in {dt:.3f} s: {len(ids) / dt:,.0f} tokens/s")


if __name__ == "__main__":
    main()
