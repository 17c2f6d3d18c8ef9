#!/usr/bin/env python3
"""Compare the mmproj GGUF `k2pack convert --to gguf --mmproj` wrote with the one llama.cpp's converter writes.

Not run in CI. Pinned: gguf==0.19.0, numpy. (llama-cpp-python 0.3.36 as installed here has no libmtmd, so the
clip loader cannot be called from Python; this compares files instead.)

    python convert_hf_to_gguf.py K25-DIR --mmproj --outfile theirs.gguf     # llama.cpp's converter
    k2pack convert K25-DIR out/ --to gguf --mmproj ours.gguf
    python scripts/gguf/mmproj_compare.py ours.gguf theirs.gguf

Prints every key only one file has or whose type or value differs, and every tensor whose type, shape or bytes
differ; exit 1 when a tensor differs. Keys k2pack leaves out on purpose (general.size_label) and the values where
it departs from llama.cpp (Manifests/json/gguf_mmproj_kimi.json, "departures") are reported, not failed.
"""

from __future__ import annotations

import sys

import gguf


def fields(reader: gguf.GGUFReader) -> dict[str, tuple[list[str], object]]:
    out = {}
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        out[key] = ([gguf.GGUFValueType(t).name for t in field.types], field.contents())
    return out


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__)
        return 64
    ours, theirs = gguf.GGUFReader(sys.argv[1]), gguf.GGUFReader(sys.argv[2])
    a, b = fields(ours), fields(theirs)
    for key in a.keys() - b.keys():
        print(f"key only in ours: {key} = {a[key]}")
    for key in b.keys() - a.keys():
        print(f"key only in theirs: {key} = {b[key]}")
    for key in a.keys() & b.keys():
        if a[key] != b[key]:
            print(f"key differs: {key}: ours {a[key]}, theirs {b[key]}")
    ta = {t.name: t for t in ours.tensors}
    tb = {t.name: t for t in theirs.tensors}
    failed = False
    for name in sorted(ta.keys() ^ tb.keys()):
        print(f"tensor only in {'ours' if name in ta else 'theirs'}: {name}")
        failed = True
    same = 0
    for name in sorted(ta.keys() & tb.keys()):
        x, y = ta[name], tb[name]
        if x.tensor_type != y.tensor_type or list(x.shape) != list(y.shape):
            print(f"tensor differs: {name}: ours {x.tensor_type.name} {list(x.shape)}, theirs {y.tensor_type.name} {list(y.shape)}")
            failed = True
        elif x.data.tobytes() != y.data.tobytes():
            print(f"tensor bytes differ: {name}")
            failed = True
        else:
            same += 1
    print(f"{same} of {len(tb)} tensors identical (name, type, shape, bytes); {len(a)} keys ours, {len(b)} theirs")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
