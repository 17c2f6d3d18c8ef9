#!/usr/bin/env python3
"""llama.cpp's own converter (convert_hf_to_gguf.py) on a synthetic K2.5 checkpoint, for the `convert --to gguf`
benchmark (docs/BENCHMARKS.md). The synthetic checkpoints carry no tokenizer, and llama.cpp's Kimi vocabulary
step needs the model's remote-code tokenizer (`AutoTokenizer(..., trust_remote_code=True)`), so that one step is
replaced by a no-op here (it takes seconds on the real model; everything else runs as a user runs it: lazy
tensors, compressed-tensors INT4 experts dequantized, written at --outtype).

    python scripts/bench/llamacpp_convert.py LLAMA_CPP_DIR CKPT --outfile OUT.gguf --outtype q8_0

LLAMA_CPP_DIR: a llama.cpp checkout (the one llama-cpp-python 0.3.36 vendors, for the same version as the load
test); the remaining arguments go to its convert_hf_to_gguf.py unchanged.
"""
import sys
from pathlib import Path

llama = Path(sys.argv[1]).resolve()
sys.path.insert(0, str(llama))
sys.argv = [str(llama / "convert_hf_to_gguf.py")] + sys.argv[2:]
import convert_hf_to_gguf  # noqa: E402
from conversion import deepseek  # noqa: E402

deepseek.DeepseekV2Model.set_vocab = lambda self: None
convert_hf_to_gguf.main()
